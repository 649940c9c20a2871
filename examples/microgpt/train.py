"""microgpt: a tiny character-level GPT in plain Python, trained for a fixed time on names.txt.

    python3 train.py                     # trains for MICROGPT_SECONDS of CPU time (default 60), then:
    val_loss=2.1234                      # the line research mode reads

No numpy: its own small-tensor autograd (one node per vector operation, not per number, which is
what makes plain Python fast enough), causal self-attention, RMSNorm, an MLP and Adam. The
hyperparameters are in params.json, so `claw research` with the hillclimb agent can tune them.
Training runs for a fixed CPU time (not a fixed number of steps), so a change is judged by
what the model learns in that time: a bigger model learns more per step but takes fewer steps.
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from operator import mul
from pathlib import Path

HERE = Path(__file__).parent
VALIDATION_NAMES = 200


# -- autograd: a node is a vector (or a flat matrix) with its gradient --------------------------

class Tensor:
    __slots__ = ("data", "grad", "prev", "back", "cols", "pending", "columns")

    def __init__(self, data: list[float], prev: tuple = (), cols: int = 0) -> None:
        self.data = data
        self.grad = [0.0] * len(data)
        self.prev = prev
        self.back = None
        self.cols = cols            # a matrix: rows of `cols` numbers, flat
        self.pending = []           # a matrix: (output grad, input) of each use, summed once per step
        self.columns = None         # a matrix: its columns, while its data does not change

    def backward(self) -> None:
        order, seen = [], set()
        stack = [(self, False)]
        while stack:  # iterative topological sort: graphs are deep (every position, every layer)
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in node.prev)
        self.grad = [1.0] * len(self.data)
        for node in reversed(order):
            if node.back is not None:
                node.back()
        for node in order:
            if node.pending:
                node.flush()

    def flush(self) -> None:
        """A matrix's gradient from all its uses at once: dot products over uses run in C (sum/map)."""
        grads = list(zip(*(g for g, _ in self.pending)))      # per output row: its grad in each use
        inputs = list(zip(*(x for _, x in self.pending)))     # per input column: its value in each use
        c = self.cols
        for i, gi in enumerate(grads):
            if any(gi):
                lo = i * c
                self.grad[lo:lo + c] = [a + sum(map(mul, gi, xj)) for a, xj in zip(self.grad[lo:lo + c], inputs)]
        self.pending = []

    def transposed(self) -> list[list[float]]:
        if self.columns is None:
            self.columns = [self.data[j::self.cols] for j in range(self.cols)]
        return self.columns


def matrix(rows: int, cols: int, rng: random.Random, std: float) -> Tensor:
    return Tensor([rng.gauss(0, std) for _ in range(rows * cols)], cols=cols)


def row(m: Tensor, index: int) -> Tensor:
    """An embedding lookup: one row of a matrix."""
    c = m.cols
    out = Tensor(m.data[index * c:(index + 1) * c], (m,))

    def back() -> None:
        m.grad[index * c:(index + 1) * c] = [a + b for a, b in zip(m.grad[index * c:(index + 1) * c], out.grad)]
    out.back = back
    return out


def add(a: Tensor, b: Tensor) -> Tensor:
    out = Tensor([x + y for x, y in zip(a.data, b.data)], (a, b))

    def back() -> None:
        a.grad = [x + g for x, g in zip(a.grad, out.grad)]
        b.grad = [x + g for x, g in zip(b.grad, out.grad)]
    out.back = back
    return out


def linear(w: Tensor, x: Tensor) -> Tensor:
    """w (rows x cols, flat) times x (cols)."""
    c, xd, wd = w.cols, x.data, w.data
    rows = len(wd) // c
    out = Tensor([sum(map(mul, wd[i * c:(i + 1) * c], xd)) for i in range(rows)], (w, x))

    def back() -> None:
        g = out.grad
        w.pending.append((g, xd))
        x.grad = [a + sum(map(mul, column, g)) for a, column in zip(x.grad, w.transposed())]
    out.back = back
    return out


def rmsnorm(x: Tensor) -> Tensor:
    n = len(x.data)
    scale = (sum(v * v for v in x.data) / n + 1e-5) ** -0.5
    out = Tensor([v * scale for v in x.data], (x,))

    def back() -> None:
        dot = sum(map(mul, out.grad, x.data))
        k = scale ** 3 * dot / n
        x.grad = [a + scale * g - k * v for a, g, v in zip(x.grad, out.grad, x.data)]
    out.back = back
    return out


def relu(x: Tensor) -> Tensor:
    out = Tensor([v if v > 0 else 0.0 for v in x.data], (x,))

    def back() -> None:
        x.grad = [a + (g if v > 0 else 0.0) for a, g, v in zip(x.grad, out.grad, x.data)]
    out.back = back
    return out


def attention(q: Tensor, keys: list[Tensor], values: list[Tensor], heads: int) -> Tensor:
    """Every head's attention of one query over the keys and values so far (causal by construction)."""
    n = len(q.data)
    size = n // heads
    norm = 1 / math.sqrt(size)
    weights, result = [], [0.0] * n
    for h in range(heads):
        lo, hi = h * size, (h + 1) * size
        qh = q.data[lo:hi]
        scores = [sum(map(mul, qh, k.data[lo:hi])) * norm for k in keys]
        top = max(scores)
        exps = [math.exp(s - top) for s in scores]
        total = sum(exps)
        a = [e / total for e in exps]
        weights.append(a)
        for aj, v in zip(a, values):
            result[lo:hi] = [r + aj * x for r, x in zip(result[lo:hi], v.data[lo:hi])]
    out = Tensor(result, (q, *keys, *values))

    def back() -> None:
        qg = list(q.grad)
        for h in range(heads):
            lo, hi = h * size, (h + 1) * size
            g, a, qh = out.grad[lo:hi], weights[h], q.data[lo:hi]
            da = [sum(map(mul, g, v.data[lo:hi])) for v in values]
            mean = sum(map(mul, a, da))
            for aj, daj, k, v in zip(a, da, keys, values):
                v.grad[lo:hi] = [x + aj * gi for x, gi in zip(v.grad[lo:hi], g)]
                ds = aj * (daj - mean) * norm
                if ds:
                    qg[lo:hi] = [x + ds * kk for x, kk in zip(qg[lo:hi], k.data[lo:hi])]
                    k.grad[lo:hi] = [x + ds * qq for x, qq in zip(k.grad[lo:hi], qh)]
        q.grad = qg
    out.back = back
    return out


def cross_entropy(logits: Tensor, target: int) -> Tensor:
    top = max(logits.data)
    exps = [math.exp(v - top) for v in logits.data]
    total = sum(exps)
    probs = [e / total for e in exps]
    out = Tensor([-math.log(max(probs[target], 1e-12))], (logits,))

    def back() -> None:
        g = out.grad[0]
        logits.grad = [a + g * (p - (1.0 if i == target else 0.0))
                       for i, (a, p) in enumerate(zip(logits.grad, probs))]
    out.back = back
    return out


def mean(values: list[Tensor]) -> Tensor:
    out = Tensor([sum(v.data[0] for v in values) / len(values)], tuple(values))

    def back() -> None:
        share = out.grad[0] / len(values)
        for v in values:
            v.grad[0] += share
    out.back = back
    return out


# -- the model ------------------------------------------------------------------------------

class GPT:
    def __init__(self, vocab: int, p: dict, rng: random.Random) -> None:
        self.heads, self.block = p["n_head"], p["block_size"]
        n = p["n_head"] * p["head_dim"]
        std = p["init_std"]
        self.wte, self.wpe = matrix(vocab, n, rng, std), matrix(self.block, n, rng, std)
        self.layers = [{"qkv": matrix(3 * n, n, rng, std), "proj": matrix(n, n, rng, std / 2),
                        "up": matrix(p["mlp_ratio"] * n, n, rng, std),
                        "down": matrix(n, p["mlp_ratio"] * n, rng, std / 2)} for _ in range(p["n_layer"])]
        self.head = matrix(vocab, n, rng, std)
        self.n = n

    def parameters(self) -> list[Tensor]:
        return [self.wte, self.wpe, *(m for layer in self.layers for m in layer.values()), self.head]

    def loss(self, tokens: list[int]) -> Tensor:
        """Mean next-token loss over one sequence (at most block_size predictions)."""
        tokens = tokens[:self.block + 1]
        caches = [([], []) for _ in self.layers]
        losses = []
        for t in range(len(tokens) - 1):
            x = add(row(self.wte, tokens[t]), row(self.wpe, t))
            for layer, (keys, values) in zip(self.layers, caches):
                qkv = linear(layer["qkv"], rmsnorm(x))
                q, k, v = _split3(qkv, self.n)
                keys.append(k)
                values.append(v)
                x = add(x, linear(layer["proj"], attention(q, keys, values, self.heads)))
                x = add(x, linear(layer["down"], relu(linear(layer["up"], rmsnorm(x)))))
            losses.append(cross_entropy(linear(self.head, rmsnorm(x)), tokens[t + 1]))
        return mean(losses)


def _split3(x: Tensor, n: int) -> tuple[Tensor, Tensor, Tensor]:
    parts = []
    for index in range(3):
        lo, hi = index * n, (index + 1) * n
        part = Tensor(x.data[lo:hi], (x,))

        def back(part=part, lo=lo, hi=hi) -> None:
            x.grad[lo:hi] = [a + g for a, g in zip(x.grad[lo:hi], part.grad)]
        part.back = back
        parts.append(part)
    return parts[0], parts[1], parts[2]


class Adam:
    def __init__(self, params: list[Tensor], lr: float, beta1: float = 0.9, beta2: float = 0.99) -> None:
        self.params, self.lr, self.b1, self.b2 = params, lr, beta1, beta2
        self.m = [[0.0] * len(p.data) for p in params]
        self.v = [[0.0] * len(p.data) for p in params]
        self.t = 0

    def step(self, lr_scale: float = 1.0) -> None:
        self.t += 1
        b1, b2 = self.b1, self.b2
        lr = self.lr * lr_scale * math.sqrt(1 - b2 ** self.t) / (1 - b1 ** self.t)
        for p, m, v in zip(self.params, self.m, self.v):
            m[:] = [b1 * a + (1 - b1) * g for a, g in zip(m, p.grad)]
            v[:] = [b2 * a + (1 - b2) * g * g for a, g in zip(v, p.grad)]
            p.data = [d - lr * a / (math.sqrt(b) + 1e-8) for d, a, b in zip(p.data, m, v)]
            p.columns = None
            p.grad = [0.0] * len(p.data)


# -- training -------------------------------------------------------------------------------

def main() -> int:
    params = json.loads((HERE / "params.json").read_text())
    seconds = float(os.environ.get("MICROGPT_SECONDS", params.get("train_seconds", 60)))  # of CPU time
    names = (HERE / "names.txt").read_text().split()
    chars = sorted(set("".join(names)))
    bos = len(chars)                       # one token marks both the start and the end of a name
    encode = {c: i for i, c in enumerate(chars)}
    sequences = [[bos, *(encode[c] for c in name), bos] for name in names]
    validation, train = sequences[:VALIDATION_NAMES], sequences[VALIDATION_NAMES:]
    rng = random.Random(params.get("seed", 0))
    model = GPT(len(chars) + 1, params, rng)
    optimizer = Adam(model.parameters(), params["lr"])
    count = sum(len(p.data) for p in model.parameters())
    print(f"microgpt: {count} parameters, {params['n_layer']} layer(s), {params['n_head']} head(s) x "
          f"{params['head_dim']}, training for {seconds:g} s", flush=True)
    # The budget is this process's CPU time, not wall time: experiments run side by side (or a busy
    # machine) then train for as many steps as one alone would, so their losses compare.
    started, wall, step, recent = time.process_time(), time.monotonic(), 0, []
    while (elapsed := time.process_time() - started) < seconds:
        batch = [train[rng.randrange(len(train))] for _ in range(params["batch_size"])]
        loss = mean([model.loss(seq) for seq in batch])
        loss.backward()
        warmup = min(1.0, (step + 1) / max(params["warmup_steps"], 1))
        optimizer.step(lr_scale=warmup * max(0.0, 1 - elapsed / seconds))   # linear decay over the time
        recent.append(loss.data[0])
        step += 1
        if step % 100 == 0:
            print(f"step {step} train_loss {sum(recent) / len(recent):.4f} ({elapsed:.1f} s)", flush=True)
            recent = []
    total = sum(model.loss(seq).data[0] * (len(seq[:model.block + 1]) - 1) for seq in validation)
    tokens = sum(len(seq[:model.block + 1]) - 1 for seq in validation)
    val_loss = total / tokens
    if not math.isfinite(val_loss):
        print("val_loss=nan (training diverged)")
        return 1
    print(f"steps={step} cpu_seconds={time.process_time() - started:.1f} wall_seconds={time.monotonic() - wall:.1f}")
    print(f"val_loss={val_loss:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
