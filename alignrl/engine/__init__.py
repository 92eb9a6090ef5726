"""The DeepSpeed learner (the only package that imports deepspeed)."""
