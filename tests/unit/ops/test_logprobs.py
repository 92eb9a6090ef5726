import torch

from alignrl.ops import selective_log_softmax, token_logprobs, upcast


def test_selective_log_softmax_matches_brute_force():
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 7, dtype=torch.float64)
    index = torch.randint(0, 7, (3, 4))
    expected = torch.empty(3, 4, dtype=torch.float64)
    for b in range(3):
        for t in range(4):
            z = logits[b, t]
            expected[b, t] = z[index[b, t]] - torch.log(torch.exp(z).sum())
    torch.testing.assert_close(selective_log_softmax(logits, index), expected, rtol=0, atol=1e-12)


def test_token_logprobs_alignment():
    torch.manual_seed(1)
    logits = torch.randn(2, 5, 6, dtype=torch.float64)
    ids = torch.randint(0, 6, (2, 5))
    out = token_logprobs(logits, ids)
    assert out.shape == (2, 5)
    assert torch.all(out[:, 0] == 0)
    # token t is predicted by the logits at t-1
    torch.testing.assert_close(out[1, 3], torch.log_softmax(logits[1, 2], -1)[ids[1, 3]], rtol=0, atol=1e-12)


def test_upcast_keeps_wide_dtypes():
    assert upcast(torch.zeros(1, dtype=torch.bfloat16)).dtype == torch.float32
    assert upcast(torch.zeros(1, dtype=torch.float64)).dtype == torch.float64
    assert selective_log_softmax(torch.zeros(1, 1, 4, dtype=torch.bfloat16), torch.zeros(1, 1, dtype=torch.long)).dtype \
        == torch.float32
