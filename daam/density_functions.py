"""The autograd functions of a density attention layer, each with a hand-written backward: fewer passes and less
memory than autograd's record of every op, and itself differentiable under create_graph (double backward)."""

from __future__ import annotations

import torch


# Elements per chunk of the (densities, rows, positions, cols) work tensor: small enough to stay in
# cache, large enough that per-op overhead is negligible.
_CHUNK_ELEMENTS = 1 << 19


def _chunks(z3: torch.Tensor, per_element: int):
    """Slices (a, :, b) of a (A, P, B) tensor, each making about _CHUNK_ELEMENTS elements of the
    (per_element, a, P, b) work tensor."""
    A, P, B = z3.shape
    budget = max(1, _CHUNK_ELEMENTS // (P * per_element))
    b_step = B if B <= budget else budget
    a_step = max(1, budget // b_step)
    for a in range(0, A, a_step):
        for b in range(0, B, b_step):
            yield slice(a, a + a_step), slice(b, b + b_step)


class _MixtureGate(torch.autograd.Function):
    """Mixture gate sum_k exp(e_k) for z of shape (A, P, B) and per-position parameters (K, 1, P, 1).

    e_k = log w_k - c_k (z - mu_k)^2 with c_k = 1 / (2 s_k^2) is <= 0, so no exp overflows and
    the sum of non-negative terms cannot cancel: the same value as exp(logsumexp(e)) without
    its max-shift passes. Works chunk by chunk, so the (K, A, P, B) work tensor never exists whole
    while it is computed; the densities are its outer axis, so every op runs over contiguous columns.
    When gradients are wanted the components exp(e_k) are kept for backward (K times the input's
    memory, a fraction of what a per-density loop keeps), which saves recomputing them; a backward
    under create_graph recomputes them from the inputs instead, so second derivatives are exact."""

    @staticmethod
    def forward(ctx, z, offsets, neg_inv_two_var, log_w):
        ctx.save_for_backward(z, offsets, neg_inv_two_var, log_w)
        keep = any(ctx.needs_input_grad)
        gate, components = torch.empty_like(z), []
        for a, b in _chunks(z, offsets.shape[0]):
            sq = (z[a, :, b] - offsets).square_()  # (K, a, P, b)
            part = torch.addcmul(log_w, sq, neg_inv_two_var, out=sq).exp_()
            gate[a, :, b] = part.sum(0)
            if keep:
                components.append(part)  # one per chunk, in the order backward visits them
        ctx.components = components
        return gate

    @staticmethod
    def backward(ctx, grad_gate):
        z, offsets, neg_inv_two_var, log_w = ctx.saved_tensors
        components = ctx.components
        differentiable = torch.is_grad_enabled()  # create_graph=True: autograd records this backward itself
        grad_z = torch.empty_like(z)
        grad_mu = grad_c = grad_lw = torch.zeros_like(offsets)
        for i, (a, b) in enumerate(_chunks(z, offsets.shape[0])):
            diff = z[a, :, b] - offsets  # (K, a, P, b)
            # d gate / d e_k is the k-th component exp(e_k). Out-of-place where autograd records the ops: an
            # in-place op would overwrite a value that record needs.
            if differentiable:
                term = torch.addcmul(log_w, diff.square(), neg_inv_two_var).exp() * grad_gate[a, :, b]
            else:
                term = components[i] * grad_gate[a, :, b]
            grad_lw = grad_lw + term.sum((1, 3), keepdim=True)
            weighted = term * diff  # d e_k / d z = -2 c_k diff = 2 * neg_c * diff
            grad_z[a, :, b] = 2 * (weighted * neg_inv_two_var).sum(0)
            grad_mu = grad_mu - weighted.sum((1, 3), keepdim=True)
            grad_c = grad_c + (weighted * diff if differentiable else weighted.mul_(diff)).sum((1, 3), keepdim=True)
        return grad_z, grad_mu * (2 * neg_inv_two_var), grad_c, grad_lw


def _z_and_rstd(x: torch.Tensor, weight: torch.Tensor | None, dim: int, eps: float):
    """(x - mean) / sqrt(var + eps) along dim over entries with weight 1 (biased variance; weight-0 entries of x
    must be 0 and get z = 0), written with differentiable ops. Returns z and 1 / sqrt(var + eps)."""
    if weight is None:  # two passes (torch.var_mean's one-pass Welford is several times slower off the last axis)
        centred = x - x.mean(dim, keepdim=True)
        rstd = torch.rsqrt(centred.square().mean(dim, keepdim=True) + eps)
        return centred * rstd, rstd
    count = weight.sum(dim, keepdim=True).clamp(min=1)
    centred = (x - x.sum(dim, keepdim=True) / count) * weight
    rstd = torch.rsqrt(centred.square().sum(dim, keepdim=True) / count + eps)
    return centred * rstd, rstd


class _Standardise(torch.autograd.Function):
    """_z_and_rstd's z with its backward in closed form: dx = rstd (dz - mean(dz) - z mean(dz z)) over each slice's
    real entries, a few passes instead of autograd's record of every op. Under create_graph (double backward)
    z and rstd are recomputed from the saved x, which is on the graph, so the same closed form, written out of
    place, carries the second derivative back to x."""

    @staticmethod
    def forward(ctx, x, weight, dim, eps):
        z, rstd = _z_and_rstd(x, weight, dim, eps)
        ctx.save_for_backward(x, weight, z, rstd)
        ctx.dim, ctx.eps = dim, eps
        return z

    @staticmethod
    def backward(ctx, grad_z):
        x, weight, z, rstd = ctx.saved_tensors
        dim = ctx.dim
        if torch.is_grad_enabled():  # create_graph=True: recompute, since the saved rstd has no record of its x
            z, rstd = _z_and_rstd(x, weight, dim, ctx.eps)
        if weight is None:
            mean_g, mean_gz = grad_z.mean(dim, keepdim=True), (grad_z * z).mean(dim, keepdim=True)
        else:
            count = weight.sum(dim, keepdim=True).clamp(min=1)
            grad_z = grad_z * weight
            mean_g, mean_gz = grad_z.sum(dim, keepdim=True) / count, (grad_z * z).sum(dim, keepdim=True) / count
        grad_x = (grad_z - mean_g - z * mean_gz) * rstd
        return (grad_x if weight is None else grad_x * weight), None, None, None
