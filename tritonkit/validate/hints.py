"""The fix a failing check names: the tritonkit command that changes what the check measured.

One place for the command lines, so every check words them the same way and the README's
production recipe (``README.md``, "Your own model", step 6) is what they point to. A hint
depends on what is already deployed: a check whose hint was followed and still fails gives
the next step, not the same advice again (see :func:`metrics_hint`).
"""

from __future__ import annotations

from tritonkit.serve.profiles import API_KEY_ENV

# The queue timeout of the production recipe on the CPU target: above the bundled server's
# ~500 ms queue-policy stalls (README, "Queue policies"), so a stall is never a rejection.
RECIPE_QUEUE_TIMEOUT_US = 1_000_000

SERVE_PRODUCTION = f"`tritonkit serve --local --profile production` (key in ${API_KEY_ENV})"
SERVE_LOOPBACK = "`tritonkit serve --local` without --host (binds 127.0.0.1)"


def repo_timeout(timeout_us: int = RECIPE_QUEUE_TIMEOUT_US) -> str:
    """A timeout-only queue policy: every shed request is a counted queue-timeout rejection."""
    return f"`tritonkit repo ... --queue-timeout-us {timeout_us}` (no --queue-size)"


def queue_policy_hint() -> str:
    return f"write the model with a queue policy: {repo_timeout()}"


def metrics_hint(max_queue_size: int, timeout_us: int) -> str:
    """Queue-full rejections are not counted by Triton 2.51. Without a timeout: add one. With a
    timeout that a full queue never lets a request reach: drop the size limit."""
    if not timeout_us:
        return f"add a queue timeout so shed requests are counted: {repo_timeout()}"
    return (f"the {timeout_us / 1000:g} ms timeout never fired: the queue of {max_queue_size} was full first; "
            f"make the timeout the only limit: {repo_timeout(timeout_us)}")


def overload_requests_hint(burst: int) -> str:
    return f"send a larger burst: `tritonkit validate ... --overload-requests {burst * 4}`"


def slo_hint(stalled: bool) -> str:
    if stalled:
        return ("the SLO is below the bundled server's queue-policy stall: validate with `--slo-p99-ms 1000` "
                "on the CPU target, or serve with NGC's tritonserver (README, Queue policies)")
    return ("measure the capacity with `tritonkit perf sweep`, then lower `--concurrency` or add "
            "instances (`tritonkit repo ... --instances N`)")
