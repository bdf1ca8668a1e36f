"""The probe's solver: L-BFGS on the multinomial logistic objective in variables where its Hessian
is about the identity (``Problem``), stopped by a tolerance on the objective (``converged``), with
a float64 finish where float32 stalls (``solve``). ``benchmark/probe.py`` sweeps C with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

WINDOW = 5  # the shortest run of iterations whose objective decrease ``converged`` reads
HISTORY = 30  # L-BFGS curvature pairs kept (memory: 2 * HISTORY * K * (D + 1) numbers)


class Problem:
    """The objective as a function of one flat vector ``theta = [V (K*D), beta (K)]`` in which its
    Hessian is close to the identity, for L-BFGS:

        W = (V * u) R^T,  b = beta / sqrt(kappa) - W mu,

    R the eigenvectors of the features' covariance (eigenvalues lam), mu their mean, kappa the
    cross-entropy's mean curvature per class and u = (kappa * lam + 2 * penalty)^(-1/2), from the
    Hessian's approximation (kappa * covariance + 2 * penalty) per class. An exact change of
    variables: the optimum does not move. ``rescale`` switches to another penalty and kappa.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        num_classes: int,
        dtype: torch.dtype,
        penalty: float,
        kappa: float | None = None,
    ):
        x = x.to(dtype)
        self.source = x
        self.n, self.d = x.shape
        self.k = num_classes
        self.kd = self.k * self.d
        self.mu = x.mean(0)
        centred = x - self.mu
        lam, rot = torch.linalg.eigh((centred.T @ centred).double() / self.n)
        self.lam, self.rot = lam.clamp_min(0).to(dtype), rot.to(dtype)
        self.x = centred @ self.rot  # the centred features in the covariance's eigenbasis
        del centred
        self.y = y.to(x.device, torch.long)[:, None]
        # the objective without weights (W = 0, the best intercept: log class frequencies): the
        # entropy of the labels; the weights lower the objective below it (``scale``)
        freq = torch.bincount(self.y[:, 0], minlength=self.k).double() / self.n
        self.floor = float(-(freq[freq > 0] * freq[freq > 0].log()).sum())
        # kappa defaults to its value where all classes are equally likely, as at W = b = 0
        self._set(penalty, 1.0 / num_classes if kappa is None else kappa)
        self.last_kappa = self.kappa  # kappa at the latest evaluation

    def _set(self, penalty: float, kappa: float) -> None:
        self.penalty, self.kappa = penalty, kappa
        scale = kappa * self.lam + 2 * penalty
        self.u = scale.clamp_min(torch.finfo(scale.dtype).tiny).rsqrt()
        self.ub = kappa**-0.5

    def rescale(self, penalty: float, kappa: float, vectors: list, history: list) -> list:
        """Switch to ``penalty`` and ``kappa``: ``vectors`` (parameters) and the curvature pairs
        in ``history`` (in place) are mapped to the new variables; the pairs are then exact for
        the new penalty (only its curvature, 2 * penalty u^2 on V, changes)."""
        old_u, old_ub, old_penalty = self.u, self.ub, self.penalty
        self._set(penalty, kappa)
        ratio = torch.cat(
            [(old_u / self.u).repeat(self.k), self.u.new_full((self.k,), old_ub / self.ub)]
        )
        for i, (s, yv, _) in enumerate(history):
            s, yv = s * ratio, yv / ratio
            yv[: self.kd].add_(
                s[: self.kd] * (self.u * self.u).repeat(self.k), alpha=2 * (penalty - old_penalty)
            )
            history[i] = (s, yv, 1.0 / s.dot(yv))
        return [v * ratio for v in vectors]

    def scale(self, theta: torch.Tensor, f: float) -> float:
        """The size of the objective's weight-dependent part at ``theta`` (objective ``f``), which
        a fit's remaining decrease is measured against: the smaller of f itself (where the
        weights fit the data, f -> 0 as C grows) and what the weights take off the objective
        without them, ``floor - f``, or the penalty term ``penalty * ||W||^2`` if larger (at a
        small C the two are equal to first order and the penalty term, unlike the difference,
        keeps its relative precision where f is about ``floor``). Relative to f alone (about
        log K at small C), a tolerance would leave the small weights' direction loose."""
        w = theta[: self.kd].view(self.k, self.d) * self.u
        weights = max(self.floor - f, self.penalty * float((w * w).sum()))
        return min(abs(f), weights)

    def split(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return theta[: self.kd].view(self.k, self.d), theta[self.kd :]

    def to_theta(self, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        w, b = w.to(self.x), b.to(self.x)
        return torch.cat([((w @ self.rot) / self.u).reshape(-1), (b + w @ self.mu) / self.ub])

    def to_wb(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v, beta = self.split(theta)
        w = (v * self.u) @ self.rot.T
        return w, beta * self.ub - w @ self.mu

    def loss_grad(self, theta: torch.Tensor) -> tuple[float, torch.Tensor]:
        """Objective (mean CE + penalty ||W||^2) and its gradient in theta; sets ``last_kappa``.

        CE_i = log1p(sum_{j != m} exp(z_j - z_m)) + z_m - z_y with m the argmax: the loss and the
        true class's gradient, -s/(1+s), stay exact where s is below float32's resolution of 1.
        """
        v, beta = self.split(theta)
        w = v * self.u  # W in the eigenbasis: ||w|| = ||W||
        z = torch.addmm(beta * self.ub, self.x, w.T)
        zmax, amax = z.max(dim=1, keepdim=True)
        e = torch.exp(z - zmax).scatter_(1, amax, 0.0)
        s = e.sum(1, keepdim=True)
        ce = torch.log1p(s) + zmax - z.gather(1, self.y)
        hit = amax == self.y
        p = e.div_(1 + s)  # the softmax but at the argmax, 1 / (1 + s), still 0 here
        # kappa: the trace of the logits' Hessian, sum_j p_j (1 - p_j), per class (1 / K where
        # p is uniform), averaged over the samples; exact, like CE, when p is nearly one-hot
        curv = (p * (1 - p)).sum(1, keepdim=True) + s / (1 + s) ** 2
        kappa = curv.mean() / max(self.k - 1, 1)
        p.scatter_(1, amax, torch.where(hit, -s, 1.0) / (1 + s))  # p - 1 at y if y is the argmax
        p.scatter_add_(1, self.y, (hit.to(p.dtype) - 1))  # -1 at y where y is not the argmax
        p.div_(self.n)
        g = torch.empty_like(theta)
        gv, gb = self.split(g)
        torch.mm(p.T, self.x, out=gv)
        gv.add_(w, alpha=2 * self.penalty).mul_(self.u)
        torch.sum(p, 0, out=gb)
        gb.mul_(self.ub)
        loss, kappa, wsq = torch.stack([ce.mean(), kappa, (w * w).sum()]).tolist()
        self.last_kappa = kappa
        return loss + self.penalty * wsq, g


@dataclass
class Fit:
    theta: torch.Tensor
    loss: float
    grad: torch.Tensor
    history: list  # [(s, y, 1 / s.y)] curvature pairs, oldest first
    iterations: int
    converged: bool


def direction(g: torch.Tensor, history: list) -> torch.Tensor:
    """-H g by the two-loop recursion, H the L-BFGS inverse Hessian (scalars stay on the device:
    no host synchronisation)."""
    q = -g
    alphas = []
    for s, yv, rho in reversed(history):
        a = rho * s.dot(q)
        q = q - a * yv
        alphas.append(a)
    if history:
        s, yv, rho = history[-1]
        q = q / (rho * yv.dot(yv))  # initial Hessian gamma I, gamma = s.y / y.y
    for (s, yv, rho), a in zip(history, reversed(alphas), strict=True):
        q = q + (a - rho * yv.dot(q)) * s
    return q


def converged_by_trend(losses: list[float], tol: float, scale: float) -> bool:
    """Whether the objective is within about ``tol`` (relative) of its optimum, judged from its
    decreases over the last three windows of w iterations, d1, d2, d3 (w = WINDOW, or a twelfth
    of the iterations so far in a long fit, where single decreases are noisy).

    Were the convergence linear with rate r per window, the windows to come would decrease by
    d3 * r, d3 * r^2, ...: d3 * r / (1 - r) in all, the estimate (taken as at least d3), with r
    the larger of d2 / d1 and d3 / d2 (a fast first window, as after a warm start, followed by
    slow ones must not pass for fast convergence). A fit that does not slow down has converged
    only once d3 is below tol / 10: the resolution of the objective.
    """
    k = len(losses) - 1
    w = max(WINDOW, k // 12)
    if k < 3 * w:
        return False
    f = scale
    d1, d2, d3 = (losses[k - i * w] - losses[k - (i - 1) * w] for i in (3, 2, 1))
    if not (d3 < d2 < d1):
        return d3 <= 0.1 * tol * f
    r = max(d2 / d1, d3 / d2)
    return d3 * max(1.0, r / (1 - r)) <= tol * f


def remember(history: list, s: torch.Tensor, yv: torch.Tensor) -> None:
    """Keep the curvature pair (s, y) of a step when it is positive (the most recent HISTORY)."""
    sy = s.dot(yv)
    if float(sy) > 1e-10 * float(yv.dot(yv)):
        history.append((s, yv, 1.0 / sy))
        if len(history) > HISTORY:
            history.pop(0)


def lbfgs(
    problem: Problem,
    theta: torch.Tensor,
    tol: float,
    max_iter: int,
    history: list | None = None,
    start: tuple[float, torch.Tensor] | None = None,
) -> tuple[Fit, bool]:
    """L-BFGS with a backtracking (Armijo) line search. Returns the fit and whether it stalled: no
    step along the L-BFGS direction nor along -g lowered the objective (its resolution in the
    working precision reached) before ``tol`` was met."""
    f, g = start if start is not None else problem.loss_grad(theta)
    history = [] if history is None else history
    losses = [f]
    scale = problem.scale(theta, f)
    it = 0
    while it < max_iter:
        accepted, predicted = None, None
        while accepted is None:
            q = direction(g, history)
            slope = float(g.dot(q))
            if not slope < 0:  # not a descent direction (or a zero gradient): steepest descent
                history.clear()
                q, slope = -g, -float(g.dot(g))
                if slope == 0:
                    return Fit(theta, f, g, history, it, True), False
            if predicted is None:  # the quasi-Newton model's decrease to its minimum
                predicted = -slope / 2
            t = 1.0  # the variables make the Hessian about the identity: -g is about Newton's step
            for _ in range(10):
                new = theta.add(q, alpha=t)
                f_new, g_new = problem.loss_grad(new)
                if f_new < f and f_new <= f + 1e-4 * t * slope:
                    accepted = new, f_new, g_new
                    break
                # minimum of the quadratic through f, slope and f_new, kept in [0.1 t, 0.5 t]
                curv = f_new - f - slope * t
                t = min(max(-slope * t * t / (2 * curv) if curv > 0 else 0.0, 0.1 * t), 0.5 * t)
            else:
                if history:  # retry once along -g
                    history.clear()
                    continue
                # stalled: the objective's resolution in this precision is reached. Converged in
                # float64; in float32 this is no sign of convergence (where the curvature is
                # small, the optimum can lie far below): ``solve`` goes on in float64
                done = problem.x.dtype == torch.float64
                return Fit(theta, f, g, history, it, done), True
        new, f_new, g_new = accepted
        remember(history, new - theta, g_new - g)
        theta, f, g = new, f_new, g_new
        losses.append(f)
        scale = problem.scale(theta, f)
        it += 1
        # converged: by the decreases' trend (see converged_by_trend), or, in float32 before the
        # trend can be read, where the quasi-Newton model (with some curvature pairs: a fresh
        # start's model is only the preconditioner's) predicted, and the step made, a decrease
        # below tol / 10 (a fast fit may reach float32's resolution first)
        fast = problem.x.dtype == torch.float32 and it < 3 * WINDOW and len(history) >= 3
        early = fast and max(predicted, losses[-2] - f) <= 0.1 * tol * scale
        if early or converged_by_trend(losses, tol, scale):
            return Fit(theta, f, g, history, it, True), False
    return Fit(theta, f, g, history, it, False), False


def solve(
    problem: Problem,
    theta: torch.Tensor,
    tol: float,
    max_iter: int,
    history: list | None = None,
    start: tuple[float, torch.Tensor] | None = None,
    wide: list | None = None,
) -> Fit:
    """``lbfgs``, finished in float64 (the problem built once into ``wide``) if float32 stalls."""
    fit, stalled = lbfgs(problem, theta, tol, max_iter, history, start)
    if not stalled or fit.converged or problem.x.dtype == torch.float64:
        return fit
    wide = [] if wide is None else wide
    if not wide:
        wide.append(Problem(problem.source, problem.y[:, 0], problem.k, torch.float64, 0.0))
    p64 = wide[0]
    p64._set(problem.penalty, problem.kappa)
    theta64 = p64.to_theta(*(t.double() for t in problem.to_wb(fit.theta)))
    done, _ = lbfgs(p64, theta64, tol, max_iter - fit.iterations)
    theta = problem.to_theta(*(t.to(problem.x.dtype) for t in p64.to_wb(done.theta)))
    f, g = problem.loss_grad(theta)
    return Fit(theta, f, g, [], fit.iterations + done.iterations, done.converged)
