"""A critic that is linear in the inputs and their pairwise products."""

import torch

__all__ = ["QuadraticCritic"]


class QuadraticCritic(torch.nn.Module):
    r"""The critic

    .. math:: V(u) = a^\top u + \sum_{i \le j} B_{ij} u_i u_j + c,

    on the concatenation :math:`u` of its inputs (one input, or the pair ``(x, z)`` of a BiGAN
    critic). The log density ratio of two Gaussians has this form, so on Gaussian problems
    (the linear generator, probabilistic PCA) it holds the optimal critic of every f-divergence:
    the fits are then limited by optimization only, not by the critic's capacity.

    :param int dim: the total input size (``x.shape[-1] + z.shape[-1]`` for pairs).
    :param bool zero_init: start at :math:`V = 0` (else PyTorch's default initialisation).

    >>> critic = QuadraticCritic(3)
    >>> critic(torch.ones(4, 3)).shape
    torch.Size([4, 1])
    >>> QuadraticCritic(3, zero_init=False)(torch.ones(4, 2), torch.ones(4, 1)).shape
    torch.Size([4, 1])
    """

    def __init__(self, dim, *, zero_init=True):
        super().__init__()
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"Expected dim to be an int >= 1, actual {dim!r}")
        rows, cols = torch.triu_indices(dim, dim)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)
        self.linear = torch.nn.Linear(dim + rows.numel(), 1)
        if zero_init:
            torch.nn.init.zeros_(self.linear.weight)
            torch.nn.init.zeros_(self.linear.bias)

    def forward(self, *inputs):
        u = torch.cat(inputs, dim=-1)
        return self.linear(torch.cat([u, u[..., self.rows] * u[..., self.cols]], dim=-1))
