"""A float64 numpy re-statement of the ACmix module's semantics, written loop by loop.

It follows the semantics of the official code that tests/data/README.md describes, and
extends it the way the project's docstrings define the cases the official code
cannot run: odd sizes with stride > 1, dilation, tiny maps (repeated reflection),
any odd kernel_conv.  It evaluates the convolution path literally (fc, then the
grouped convolution) and the attention with the q.pe_q term included, so it is
independent of the MindSpore formulation it checks.
"""

from __future__ import annotations

import numpy as np


def reflect(i: int, n: int) -> int:
    if n == 1:
        return 0
    period = 2 * (n - 1)
    t = abs(i) % period
    return min(t, period - t)


def acmix_reference(x, params, kernel_att=7, head=4, kernel_conv=3, stride=1, dilation=1):
    x = x.astype(np.float64)
    p = {k: v.astype(np.float64) for k, v in params.items()}
    b, _, h, w = x.shape
    out_planes = p["conv1.weight"].shape[0]
    hd = out_planes // head

    def conv1x1(t, wk, bk=None):
        y = np.einsum("oc,bchw->bohw", p[wk][:, :, 0, 0], t)
        return y if bk is None else y + p[bk][None, :, None, None]

    q = conv1x1(x, "conv1.weight", "conv1.bias")
    k = conv1x1(x, "conv2.weight", "conv2.bias")
    v = conv1x1(x, "conv3.weight", "conv3.bias")
    xs = np.linspace(-1, 1, w) if w > 1 else np.array([-1.0])
    ys = np.linspace(-1, 1, h) if h > 1 else np.array([-1.0])
    loc = np.stack([np.broadcast_to(xs[None, :], (h, w)), np.broadcast_to(ys[:, None], (h, w))])[None]
    pe = conv1x1(loc, "conv_p.weight", "conv_p.bias")[0]  # (hd, h, w)

    ho, wo = -(-h // stride), -(-w // stride)
    pad = dilation * (kernel_att - 1) // 2
    scale = hd**-0.5
    out_att = np.zeros((b, out_planes, ho, wo))
    offs = [(dy * dilation - pad, dx * dilation - pad) for dy in range(kernel_att) for dx in range(kernel_att)]
    for bi in range(b):
        for hh in range(head):
            sl = slice(hh * hd, (hh + 1) * hd)
            qh, kh, vh = q[bi, sl] * scale, k[bi, sl], v[bi, sl]
            for i in range(ho):
                for j in range(wo):
                    ci, cj = i * stride, j * stride
                    qv = qh[:, ci, cj]
                    logits, vals = [], []
                    for dy, dx in offs:
                        r, c = reflect(ci + dy, h), reflect(cj + dx, w)
                        logits.append(qv @ (kh[:, r, c] + pe[:, ci, cj] - pe[:, r, c]))
                        vals.append(vh[:, r, c])
                    a = np.exp(np.array(logits) - max(logits))
                    a /= a.sum()
                    out_att[bi, sl, i, j] = np.array(vals).T @ a

    # convolution path, literally: fc over the 3*head groups, then the grouped convolution
    groups = np.concatenate([t.reshape(b, head, hd, h * w) for t in (q, k, v)], 1)  # (b, 3*head, hd, hw)
    fc = p["fc.weight"][:, :, 0, 0]  # (kc^2, 3*head)
    f = np.einsum("jg,bgdp->bdjp", fc, groups).reshape(b, hd * kernel_conv**2, h, w)
    dep = p["dep_conv.weight"]  # (O, kc^2, kc, kc)
    cpad = dilation * (kernel_conv // 2)
    fp = np.pad(f, ((0, 0), (0, 0), (cpad, cpad), (cpad, cpad)))
    per_group = out_planes // hd
    out_conv = np.zeros((b, out_planes, ho, wo))
    for o in range(out_planes):
        g = o // per_group
        src = fp[:, g * kernel_conv**2 : (g + 1) * kernel_conv**2]
        for ky in range(kernel_conv):
            for kx in range(kernel_conv):
                tap = src[:, :, ky * dilation : ky * dilation + (ho - 1) * stride + 1 : stride,
                          kx * dilation : kx * dilation + (wo - 1) * stride + 1 : stride]  # fmt: skip
                out_conv[:, o] += np.einsum("bjhw,j->bhw", tap, dep[o, :, ky, kx])
    return p["rate1"][0] * out_att + p["rate2"][0] * out_conv
