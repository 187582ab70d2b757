"""EMA: the running average against a hand computation (dyadic numbers, so bit for bit), copies
before ``start``, buffers copied, the swap of average_parameters, a resumable state_dict, tied
weights, and every ValueError branch."""

import io

import pytest
import torch

from bayesgan.ema import EMA

pytestmark = pytest.mark.usefixtures("float64")




def linear(weight, bias):
    net = torch.nn.Linear(2, 1)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([weight]))
        net.bias.copy_(torch.tensor([bias]))
    return net


def set_weights(net, weight, bias):
    with torch.no_grad():
        net.weight.copy_(torch.tensor([weight]))
        net.bias.copy_(torch.tensor([bias]))


# Weights after each "optimizer step": small dyadic numbers, so that every average below is exact.
STEPS = [([1.0, -2.0], 0.5), ([2.0, 0.0], 0.25), ([4.0, 1.0], -1.0), ([0.0, 3.0], 2.0), ([-2.0, 1.5], 0.0)]


@pytest.mark.parametrize("decay,start", [(0.5, 0), (0.75, 0), (0.75, 2), (0.5, 4), (0.0, 0), (0.5, 10)])
def test_update_is_the_hand_computed_running_average(decay, start):
    """Update t (from 0) copies the weights for t < start and averages from t = start on."""
    net = linear([3.0, 5.0], 1.0)
    ema = EMA(net, decay=decay, start=start)
    want = {"weight": torch.tensor([[3.0, 5.0]]), "bias": torch.tensor([1.0])}
    assert all(torch.equal(ema.shadow[k], v) for k, v in want.items())
    for t, (weight, bias) in enumerate(STEPS):
        set_weights(net, weight, bias)
        ema.update()
        new = {"weight": torch.tensor([weight]), "bias": torch.tensor([bias])}
        want = new if t < start else {k: decay * want[k] + (1 - decay) * new[k] for k in want}
        assert all(torch.equal(ema.shadow[k], v) for k, v in want.items())
        assert ema.num_updates == t + 1
    if start >= len(STEPS):
        assert torch.equal(ema.shadow["weight"], net.weight.detach())


def test_start_two_by_hand():
    """The same, written out: decay 1/2, start 2."""
    net = linear([0.0, 0.0], 0.0)
    ema = EMA(net, decay=0.5, start=2)
    for value in (8.0, 4.0, 2.0, 1.0):
        set_weights(net, [value, -value], value)
        ema.update()
    # copies 8, 4; then 0.5 * 4 + 0.5 * 2 = 3; then 0.5 * 3 + 0.5 * 1 = 2
    assert ema.shadow["weight"].tolist() == [[2.0, -2.0]]
    assert ema.shadow["bias"].tolist() == [2.0]


def test_buffers_are_copied_not_averaged():
    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))
    ema = EMA(net, decay=0.5)
    torch.manual_seed(0)
    for _ in range(3):
        net(torch.randn(16, 2) * 3.0 + 1.0)  # train mode: moves the running statistics
        ema.update()
    bn = net[1]
    assert torch.equal(ema.shadow["1.running_mean"], bn.running_mean)
    assert torch.equal(ema.shadow["1.running_var"], bn.running_var)
    assert ema.shadow["1.num_batches_tracked"].item() == 3
    assert ema.shadow["1.num_batches_tracked"].dtype == torch.long


def test_average_parameters_swaps_in_and_restores():
    net = linear([1.0, 1.0], 0.0)
    ema = EMA(net, decay=0.5)
    set_weights(net, [3.0, -1.0], 2.0)
    ema.update()  # average: [2, 0], 1
    trained = [p.detach().clone() for p in net.parameters()]
    x = torch.tensor([[1.0, 2.0]])
    with ema.average_parameters() as module:
        assert module is net
        assert net.weight.tolist() == [[2.0, 0.0]] and net.bias.tolist() == [1.0]
        assert net(x).item() == 3.0
    assert all(torch.equal(a, p) for a, p in zip(trained, net.parameters()))
    with pytest.raises(RuntimeError, match="inside"):
        with ema.average_parameters():
            raise RuntimeError("inside")
    assert all(torch.equal(a, p) for a, p in zip(trained, net.parameters()))


def test_copy_to_another_module():
    net = linear([1.0, 1.0], 0.0)
    ema = EMA(net, decay=0.5)
    set_weights(net, [3.0, -1.0], 2.0)
    ema.update()
    other = linear([0.0, 0.0], 0.0)
    ema.copy_to(other)
    assert other.weight.tolist() == [[2.0, 0.0]] and other.bias.tolist() == [1.0]
    assert net.weight.tolist() == [[3.0, -1.0]]


def bn_net():
    return torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.BatchNorm1d(4), torch.nn.Tanh(), torch.nn.Linear(4, 1))


def _train(net, ema, opt, steps, seed):
    torch.manual_seed(seed)
    for _ in range(steps):
        opt.zero_grad()
        net(torch.randn(8, 2)).pow(2).mean().backward()
        opt.step()
        ema.update()


def test_state_dict_round_trip_resumes_identically():
    """Save at step 3 (before start = 4), resume in a fresh EMA: the next steps, which cross
    the start, give the same averages bit for bit as the uninterrupted run."""
    torch.manual_seed(0)
    net = bn_net()
    ema = EMA(net, decay=0.9, start=4)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    _train(net, ema, opt, 3, seed=1)
    buffer = io.BytesIO()
    torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "ema": ema.state_dict()}, buffer)
    _train(net, ema, opt, 4, seed=2)

    buffer.seek(0)
    saved = torch.load(buffer)
    torch.manual_seed(5)
    net2 = bn_net()
    net2.load_state_dict(saved["net"])
    ema2 = EMA(net2, decay=0.5, start=0)  # other settings: the state restores them
    ema2.load_state_dict(saved["ema"])
    assert (ema2.decay, ema2.start, ema2.num_updates) == (0.9, 4, 3)
    opt2 = torch.optim.SGD(net2.parameters(), lr=0.1)
    opt2.load_state_dict(saved["opt"])
    _train(net2, ema2, opt2, 4, seed=2)

    assert ema2.num_updates == ema.num_updates == 7
    assert ema2.shadow.keys() == ema.shadow.keys()
    assert all(torch.equal(ema2.shadow[k], ema.shadow[k]) for k in ema.shadow)
    assert repr(ema2) == repr(ema) == "EMA(decay=0.9, start=4, num_updates=7)"


def test_load_state_dict_copies():
    net = linear([1.0, 1.0], 0.0)
    ema = EMA(net, decay=0.5)
    state = ema.state_dict()
    other = EMA(linear([0.0, 0.0], 0.0), decay=0.5)
    other.load_state_dict(state)
    set_weights(net, [3.0, 3.0], 2.0)
    ema.update()
    assert other.shadow["weight"].tolist() == [[1.0, 1.0]]


def test_tied_weights_are_averaged_under_every_name():
    """A parameter shared by two layers appears twice in state_dict; both entries are averages
    (copying the second would make copy_to load the raw weights over the average)."""
    net = torch.nn.Sequential(torch.nn.Linear(2, 2, bias=False), torch.nn.Linear(2, 2, bias=False))
    net[1].weight = net[0].weight
    with torch.no_grad():
        net[0].weight.fill_(1.0)
    ema = EMA(net, decay=0.5)
    with torch.no_grad():
        net[0].weight.fill_(3.0)
    ema.update()
    assert torch.equal(ema.shadow["0.weight"], torch.full((2, 2), 2.0))
    assert torch.equal(ema.shadow["1.weight"], torch.full((2, 2), 2.0))
    with ema.average_parameters():
        assert torch.equal(net[0].weight, torch.full((2, 2), 2.0))


# -- ValueError branches -------------------------------------------------------------------------
@pytest.mark.parametrize("decay", [-0.1, 1.0, 1.5])
def test_decay_out_of_range(decay):
    with pytest.raises(ValueError, match="Expected 0 <= decay < 1"):
        EMA(torch.nn.Linear(1, 1), decay=decay)


@pytest.mark.parametrize("start", [-1, 1.5, "2", None])
def test_bad_start(start):
    with pytest.raises(ValueError, match="Expected start to be an int >= 0"):
        EMA(torch.nn.Linear(1, 1), start=start)
