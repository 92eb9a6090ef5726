"""Speed benchmarks of alignrl against peers (``python -m benchmarks.run``).

Speed is always a ratio against a peer measured in the same process, in interleaved repeats
(A, B, A, B, ...), reported as medians with their spread; nothing asserts an absolute time.
"""
