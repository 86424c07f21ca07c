"""contract: what the server says about a model agrees with its card.

Compared: input and output names, dtypes and per-sample dims (model metadata and config),
the input format (NCHW/NHWC) against the card's layout, the max batch (served <= card's),
and, for classifiers, the served labels file against the card's labels — read through the
server with Triton's classification extension (``class_count``), so this works remotely too.
"""

from __future__ import annotations

from tritonkit.cards import ModelCard
from tritonkit.contract import contract_mismatches, normalize_config, normalize_metadata
from tritonkit.errors import ServerError
from tritonkit.triton import grpcclient, make_inputs, seeded_batch
from tritonkit.validate.context import Context, ModelTarget
from tritonkit.validate.groups import check_group
from tritonkit.validate.result import CheckResult, fail, verdict


def metadata_problems(card: ModelCard, metadata: dict, config: dict) -> list[str]:
    """Differences in names, dtypes and dims: the client's own contract check (one definition of
    "matches the card" for the client and validation)."""
    return contract_mismatches(card, normalize_metadata(metadata), normalize_config(config), 1)


def config_problems(card: ModelCard, config: dict) -> list[str]:
    """Differences between the served config (Triton's JSON rendering) and the card."""
    problems = []
    mbs = int(config.get("max_batch_size", 0))
    if mbs > card.max_batch_size:
        problems.append(f"max_batch_size {mbs} > card max {card.max_batch_size}")
    inputs = {t["name"]: t for t in config.get("input", [])}
    spec = inputs.get(card.input.name)
    if spec is not None:
        fmt = spec.get("format", "FORMAT_NONE")
        if fmt not in ("FORMAT_NONE", f"FORMAT_{card.preprocess.layout}"):
            problems.append(f"input format {fmt} != card layout {card.preprocess.layout}")
        if spec.get("data_type") != f"TYPE_{card.input.dtype}":
            problems.append(f"config input dtype {spec.get('data_type')} != TYPE_{card.input.dtype}")
    if card.has_labels:
        first = next((o for o in config.get("output", []) if o.get("name") == card.outputs[0].name), None)
        if first is not None and not first.get("label_filename"):
            problems.append(f"output {card.outputs[0].name!r} has no label_filename (card labels {card.labels!r})")
    return problems


def check_metadata(ctx: Context, target: ModelTarget) -> CheckResult:
    name = "contract.metadata"
    if target.card is None:
        return fail(name, target.card_source, target.name)
    if target.config_error:
        return fail(name, target.config_error, target.name)
    try:
        metadata = ctx.served(target.name).metadata()
    except ServerError as exc:
        return fail(name, str(exc), target.name)
    problems = metadata_problems(target.card, metadata, target.config) + config_problems(target.card, target.config)
    return verdict(name, problems, f"names, dtypes, dims, format and max batch match card ({target.card_source})",
                   target.name, card_source=target.card_source,
                   served_max_batch=int(target.config.get("max_batch_size", 0)),
                   card_max_batch=target.card.max_batch_size)


def served_labels(ctx: Context, target: ModelTarget) -> list[str]:
    """Class names by index, as the server's labels file gives them (classification extension)."""
    card = target.card
    out = card.outputs[0]
    requested = [grpcclient.InferRequestedOutput(out.name, class_count=card.num_classes)]
    result = ctx.grpc().infer(target.name, make_inputs(card, seeded_batch(card, 1, ctx.options.seed)),
                              outputs=requested, client_timeout=ctx.options.request_timeout_s)
    labels: dict[int, str] = {}
    for entry in result.as_numpy(out.name).reshape(-1):
        text = entry.decode() if isinstance(entry, bytes) else str(entry)
        parts = text.split(":", 2)
        if len(parts) == 3:
            labels[int(parts[1])] = parts[2]
    return [labels.get(i, "") for i in range(card.num_classes)]


def check_labels(ctx: Context, target: ModelTarget) -> CheckResult:
    name = "contract.labels"
    card = target.card
    if card is None:
        return fail(name, target.card_source, target.name)
    if not card.has_labels:
        return verdict(name, [], f"not applicable: {card.task} model has no labels file", target.name)
    try:
        expected = card.label_names()
        got = served_labels(ctx, target)
    except Exception as exc:
        return fail(name, f"labels not readable through the server: {exc}", target.name)
    wrong = [f"{i}: served {g!r} != card {e!r}" for i, (g, e) in enumerate(zip(got, expected)) if g != e]
    problems = []
    if not any(got):
        problems.append("the server returned no labels (no label_filename on the output?)")
    elif wrong:
        problems.append(f"{len(wrong)} of {len(expected)} labels differ ({'; '.join(wrong[:3])})")
    return verdict(name, problems, f"{len(expected)} served labels equal card labels {card.labels!r}",
                   target.name, classes=len(expected), mismatched=len(wrong))


@check_group("contract", 20, per_endpoint=True)
def run(ctx: Context) -> list[CheckResult]:
    results = []
    for t in ctx.targets:
        results += [check_metadata(ctx, t), check_labels(ctx, t)]
    return results
