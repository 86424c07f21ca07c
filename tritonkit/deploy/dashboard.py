"""The Grafana dashboard of a deployment, built with Grafana Labs' typed builders (grafana-foundation-sdk).

One row per :class:`~tritonkit.deploy.queries.PanelSpec` row (traffic, latency, batching and
load, the server's CPU and memory, and GPU on the gpu target), each panel a time series whose
queries come from :mod:`tritonkit.deploy.queries` in its Grafana scope. Three variables:
``datasource`` (any Prometheus data source), ``namespace`` (from the servers' series; the
deployment's namespace selected) and ``model`` (multi-select, All by default).

:func:`dashboard_json` returns the JSON Grafana imports (Dashboards > New > Import, or a
provisioning folder); :func:`panel_queries` lists every query in it with its panel, for the
checks that run them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Mapping

from tritonkit._lazy import lazy_import
from tritonkit.deploy.queries import SUCCESS, PanelSpec, dashboard_panels, grafana_scope

gdb = lazy_import("grafana_foundation_sdk.builders.dashboard", "grafana-foundation-sdk")
gts = lazy_import("grafana_foundation_sdk.builders.timeseries", "grafana-foundation-sdk")
gprom = lazy_import("grafana_foundation_sdk.builders.prometheus", "grafana-foundation-sdk")
gcommon = lazy_import("grafana_foundation_sdk.builders.common", "grafana-foundation-sdk")
gmodels = lazy_import("grafana_foundation_sdk.models.dashboard", "grafana-foundation-sdk")
gcommon_models = lazy_import("grafana_foundation_sdk.models.common", "grafana-foundation-sdk")
gencoder = lazy_import("grafana_foundation_sdk.cog.encoder", "grafana-foundation-sdk")

PANEL_WIDTH, PANEL_HEIGHT = 12, 8          # two panels per row of Grafana's 24-column grid
MAX_UID = 40                               # Grafana's limit on a dashboard uid


@dataclass(frozen=True)
class DashboardSpec:
    """What the dashboard is for: the deployment's name and namespace, its models' instances, the target."""

    name: str
    namespace: str
    instances: Mapping[str, int]     # model -> instance count (models that have instances)
    gpu: bool

    @property
    def uid(self) -> str:
        uid = f"tritonkit-{self.namespace}-{self.name}"
        return uid if len(uid) <= MAX_UID else "tritonkit-" + hashlib.sha256(uid.encode()).hexdigest()[:24]

    @property
    def title(self) -> str:
        return f"Triton: {self.name} ({self.namespace})"

    def panels(self) -> list[PanelSpec]:
        return dashboard_panels(self.instances, self.gpu)


def _datasource():
    return gmodels.DataSourceRef(type_val="prometheus", uid="${datasource}")


def _variables(spec: DashboardSpec) -> list:
    ds = _datasource()
    chosen = gmodels.VariableOption(selected=True, text=spec.namespace, value=spec.namespace)
    all_models = gmodels.VariableOption(selected=True, text="All", value="$__all")
    return [
        gdb.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        gdb.QueryVariable("namespace").label("Namespace").datasource(ds)
        .query(f"label_values({SUCCESS}, namespace)").current(chosen)
        .refresh(gmodels.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(gmodels.VariableSort.ALPHABETICAL_ASC),
        gdb.QueryVariable("model").label("Model").datasource(ds)
        .query(f'label_values({SUCCESS}{{namespace=~"$namespace"}}, model)').current(all_models)
        .multi(True).include_all(True).all_value(".*")
        .refresh(gmodels.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(gmodels.VariableSort.ALPHABETICAL_ASC),
    ]


def _panel(panel: PanelSpec, panel_id: int):
    scope = grafana_scope()
    builder = (gts.Panel().id(panel_id).title(panel.title).description(panel.description).unit(panel.unit)
               .datasource(_datasource()).span(PANEL_WIDTH).height(PANEL_HEIGHT).min(0)
               .legend(gcommon.VizLegendOptions().show_legend(True)
                       .display_mode(gcommon_models.LegendDisplayMode.TABLE)
                       .placement(gcommon_models.LegendPlacement.BOTTOM)))
    if panel.stacked:
        builder = builder.stacking(gcommon.StackingConfig().mode(gcommon_models.StackingMode.NORMAL)).fill_opacity(30)
    for i, series in enumerate(panel.series):
        builder = builder.with_target(gprom.Dataquery().ref_id(chr(ord("A") + i)).datasource(_datasource())
                                      .expr(series.query(scope)).legend_format(series.legend).range())
    return builder


def build_dashboard(spec: DashboardSpec):
    """The dashboard as grafana-foundation-sdk's model."""
    board = (gdb.Dashboard(spec.title).uid(spec.uid).tags(["tritonkit", "triton"]).editable()
             .refresh("30s").time("now-1h", "now").timezone("browser")
             .tooltip(gmodels.DashboardCursorSync.CROSSHAIR)
             .description("Triton Inference Server metrics of a tritonkit deployment: traffic and failures, queue "
                          "vs compute time, latency quantiles, executed batch size, pending requests, instance "
                          "utilisation, devices. Written by tritonkit; regenerate rather than edit."))
    for variable in _variables(spec):
        board = board.with_variable(variable)
    row, panel_id = None, 1
    for panel in spec.panels():
        if panel.row != row:
            row = panel.row
            board = board.with_row(gdb.Row(row).id(panel_id))
            panel_id += 1
        board = board.with_panel(_panel(panel, panel_id))
        panel_id += 1
    return board.build()


def dashboard_json(spec: DashboardSpec) -> dict:
    """The dashboard as the JSON object Grafana imports."""
    return json.loads(json.dumps(build_dashboard(spec), cls=gencoder.JSONEncoder))


@dataclass(frozen=True)
class PanelQuery:
    """One query of a written dashboard: its panel's title, the legend and the PromQL."""

    panel: str
    legend: str
    expr: str


def panel_queries(board: dict) -> list[PanelQuery]:
    """Every query of a dashboard JSON (as written), panel by panel."""
    return [PanelQuery(p["title"], t.get("legendFormat", ""), t["expr"])
            for p in board.get("panels", []) if p.get("type") != "row" for t in p.get("targets", [])]
