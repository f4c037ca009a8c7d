#!/usr/bin/env python3
# Generates serving.json and training.json (Grafana dashboards, InfluxQL on
# InfluxDB 1.8) next to this script. Edit here, run it, commit both outputs;
# dashboards_test.go runs every panel query against a real InfluxDB.
import os
import json
DS = {"type": "influxdb", "uid": "gpuorch-influxdb"}
def target(q, ref="A", fmt="time_series", alias=None):
    t = {"refId": ref, "datasource": DS, "rawQuery": True, "query": q, "resultFormat": fmt}
    if alias: t["alias"] = alias
    return t
def ts(pid, title, desc, targets, unit, x, y, w=12, h=8, extra=None):
    p = {"id": pid, "type": "timeseries", "title": title, "description": desc, "datasource": DS,
         "gridPos": {"x": x, "y": y, "w": w, "h": h}, "targets": targets,
         "fieldConfig": {"defaults": {"unit": unit, "custom": {"spanNulls": True, "showPoints": "auto"}}, "overrides": []},
         "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}, "tooltip": {"mode": "multi", "sort": "desc"}}}
    if extra: p.update(extra)
    return p
def var(name, label, query, multi=True, include_all=True, regex=""):
    return {"name": name, "label": label, "type": "query", "datasource": DS, "query": query, "definition": query,
            "refresh": 2, "multi": multi, "includeAll": include_all, "allValue": ".*" if include_all else None,
            "sort": 3, "regex": regex, "current": {}, "options": [], "hide": 0}
def dashboard(uid, title, desc, tags, variables, panels, rng="now-1h"):
    return {"uid": uid, "title": title, "description": desc, "tags": tags, "editable": True, "schemaVersion": 39,
            "version": 1, "time": {"from": rng, "to": "now"}, "refresh": "10s", "timezone": "utc",
            "graphTooltip": 1, "templating": {"list": variables}, "annotations": {"list": []}, "panels": panels,
            "links": [], "fiscalYearStartMonth": 0, "liveNow": False}

W = '"experiment" =~ /^$experiment$/ AND "task" =~ /^$task$/'
WA = W + " AND \"class\" = ''"   # the all-requests series (per-class series carry a class tag)
G = 'GROUP BY time($__interval), "task" fill(none)'
def sel(fields, meas="serving", where=WA, group=G):
    return f'SELECT {fields} FROM "{meas}" WHERE {where} AND $timeFilter {group}'
# A sharded task (run.shards) writes one series per shard (tag shard).
# Rates add up over its shards: each shard's per bucket, then their sum.
# Percentiles cannot be merged in InfluxQL: they are shown per shard
# (GS, alias SHARD); `gpuorch results show` merges the histograms exactly.
GS = 'GROUP BY time($__interval), "task", "shard" fill(none)'
SHARD = "$tag_task $tag_shard"
def shardsum(inner, outer):
    return f'SELECT {outer} FROM ({sel(inner, group=GS)}) WHERE $timeFilter {G}'
SHARDS_NOTE = " A sharded task's shards are added up."
PER_SHARD_NOTE = " A sharded task shows one line per shard (merged percentiles: gpuorch results show)."

serving_vars = [
    var("experiment", "Experiment", 'SHOW TAG VALUES FROM "serving_summary" WITH KEY = "experiment"', multi=False, include_all=False),
    var("task", "Task", 'SHOW TAG VALUES FROM "serving" WITH KEY = "task" WHERE "experiment" =~ /^$experiment$/'),
]
sp = []
y = 0
sp.append({"id": 1, "type": "table", "title": "Tasks (whole-run summary)", "datasource": DS,
           "description": "One row per task from serving_summary (breakdown=total): offered and achieved rate, corrected latency percentiles (ms), SLO attainment and goodput. A sharded task has one row per shard (its merged row: gpuorch results show).",
           "gridPos": {"x": 0, "y": y, "w": 24, "h": 7},
           "targets": [target('SELECT last("offered_rate") AS "offered/s", last("achieved_rate") AS "achieved/s", last("latency_p50") AS "p50 ms", last("latency_p99") AS "p99 ms", last("latency_p999") AS "p99.9 ms", last("slo_attainment") AS "SLO attainment", last("goodput") AS "goodput/s", last("errors") AS "errors", last("dropped") AS "dropped" FROM "serving_summary" WHERE ' + W + " AND \"breakdown\" = 'total' AND $timeFilter GROUP BY \"task\", \"shard\"", fmt="table")],
           "transformations": [{"id": "merge", "options": {}}],
           "fieldConfig": {"defaults": {"decimals": 2}, "overrides": []}, "options": {"showHeader": True}})
y += 7
sp.append(ts(2, "Throughput (completed req/s)", "achieved_rate per interval, per task (all requests)." + SHARDS_NOTE,
             [target(shardsum('mean("achieved_rate") AS "achieved_rate"', 'sum("achieved_rate")'), alias="$tag_task")], "reqps", 0, y))
sp.append(ts(3, "Offered vs achieved rate", "Scheduled (offered) against completed (achieved) requests/s: a gap means the server (or the load generator) fell behind." + SHARDS_NOTE,
             [target(shardsum('mean("offered_rate") AS "offered", mean("achieved_rate") AS "achieved"', 'sum("offered") AS "offered", sum("achieved") AS "achieved"'), alias="$tag_task $col")], "reqps", 12, y))
y += 8
sp.append(ts(4, "Corrected latency p50 / p99 / p99.9", "Latency from each request's intended send time (coordinated-omission-correct), per interval." + PER_SHARD_NOTE,
             [target(sel('mean("latency_p50") AS "p50", mean("latency_p99") AS "p99", mean("latency_p999") AS "p99.9"', group=GS), alias=SHARD + " $col")], "ms", 0, y))
sp.append(ts(5, "p99: corrected vs uncorrected", "Corrected (from intended send) against uncorrected (from actual send) p99. The difference is queueing the uncorrected number hides." + PER_SHARD_NOTE,
             [target(sel('mean("latency_p99") AS "corrected", mean("service_p99") AS "uncorrected"', group=GS), alias=SHARD + " $col")], "ms", 12, y))
y += 8
sp.append(ts(6, "SLO attainment", "slo_met / offered per interval: drops, errors and timeouts count as misses." + SHARDS_NOTE,
             [target(sel('sum("slo_met") / sum("offered")'), alias="$tag_task")], "percentunit", 0, y,
             extra={"fieldConfig": {"defaults": {"unit": "percentunit", "min": 0, "max": 1, "custom": {"spanNulls": True}}, "overrides": []}}))
sp.append(ts(7, "Goodput (req/s within SLO)", "Completed-within-deadline requests/s per interval." + SHARDS_NOTE,
             [target(shardsum('mean("goodput") AS "goodput"', 'sum("goodput")'), alias="$tag_task")], "reqps", 12, y))
y += 8
sp.append(ts(8, "Errors, timeouts and drops", "Per interval, summed over the selected tasks.",
             [target(sel('sum("errors") AS "errors", sum("timeouts") AS "timeouts", sum("dropped") AS "dropped"', group='GROUP BY time($__interval) fill(none)'), alias="$col")], "short", 0, y))
sp.append(ts(9, "Load generator lateness p99", "Actual send − intended send: how far the load generator itself fell behind its schedule." + PER_SHARD_NOTE,
             [target(sel('mean("lateness_p99")', group=GS), alias=SHARD)], "ms", 12, y))
y += 8
sp.append({"id": 10, "type": "table", "title": "Per class (whole run)", "datasource": DS,
           "description": "Workloads with request classes (e.g. Clockwork slo-exp-2 fg/bg): serving_summary breakdown=class, one row per task and class.",
           "gridPos": {"x": 0, "y": y, "w": 12, "h": 8},
           "targets": [target('SELECT last("offered_rate") AS "offered/s", last("latency_p50") AS "p50 ms", last("latency_p99") AS "p99 ms", last("slo_attainment") AS "SLO attainment" FROM "serving_summary" WHERE ' + W + " AND \"breakdown\" = 'class' AND $timeFilter GROUP BY \"task\", \"shard\", \"class\"", fmt="table")],
           "transformations": [{"id": "merge", "options": {}}],
           "fieldConfig": {"defaults": {"decimals": 2}, "overrides": []}, "options": {"showHeader": True}})
sp.append(ts(11, "LLM: TTFT and TPOT p99", "Streaming LLM targets only (OpenAI-compatible): time to first token and time per output token, vLLM definitions." + PER_SHARD_NOTE,
             [target(sel('mean("ttft_p99") AS "TTFT p99", mean("tpot_p99") AS "TPOT p99"', group=GS), alias=SHARD + " $col")], "ms", 12, y))
y += 8
sp.append(ts(12, "LLM: output tokens/s", "Output tokens per second per interval (streaming LLM targets)." + SHARDS_NOTE,
             [target(shardsum('sum("output_tokens") / sum("interval_s") AS "tokens_per_s"', 'sum("tokens_per_s")'), alias="$tag_task")], "short", 0, y))
sp.append(ts(13, "LLM: ITL p99 and E2EL p99", "Inter-token latency and end-to-end latency, streaming LLM targets." + PER_SHARD_NOTE,
             [target(sel('mean("itl_p99") AS "ITL p99", mean("e2el_p99") AS "E2EL p99"', group=GS), alias=SHARD + " $col")], "ms", 12, y))

y += 8
# Deployments of replicas (package deploy): measurement "deployment", kind
# decision (one point per controller interval), replica (per replica and
# interval), event (per replica change).
WD = W + " AND \"kind\" = 'decision'"
sp.append(ts(14, "Deployment: replicas beside p99", "Ready and desired replicas of each task's deployment (left) and the corrected p99 latency per interval (right): scale-ups follow SLO breaches, scale-downs follow calm.",
             [target(sel('last("ready") AS "ready", last("desired") AS "desired"', meas="deployment", where=WD, group='GROUP BY time($__interval), "task" fill(previous)'), alias="$tag_task $col"),
              target(sel('mean("latency_p99") AS "p99"'), ref="B", alias="$tag_task $col ms")], "short", 0, y,
             extra={"fieldConfig": {"defaults": {"unit": "short", "min": 0, "custom": {"spanNulls": True, "lineInterpolation": "stepAfter"}},
                                    "overrides": [{"matcher": {"id": "byRegexp", "options": ".*p99.*"},
                                                   "properties": [{"id": "custom.axisPlacement", "value": "right"}, {"id": "unit", "value": "ms"},
                                                                  {"id": "custom.lineInterpolation", "value": "linear"}]}]}}))
sp.append(ts(15, "Deployment: requests per replica", "Requests each replica served per interval (kind replica): the balancer's spread, and where a lost replica's requests went.",
             [target(sel('sum("sent")', meas="deployment", where=W + " AND \"kind\" = 'replica'", group='GROUP BY time($__interval), "task", "replica" fill(none)'), alias="$tag_task $tag_replica")], "short", 12, y))
y += 8
sp.append({"id": 16, "type": "table", "title": "Deployment: decisions", "datasource": DS,
           "description": "Every decision of the autoscaling controller that did something (start, scale-up, scale-down, replace, stop), with the signal's value and the reason.",
           "gridPos": {"x": 0, "y": y, "w": 24, "h": 8},
           "targets": [target('SELECT "action", "desired", "ready", "starting", "draining", "value", "reason" FROM "deployment" WHERE ' + WD + " AND \"action\" != 'hold' AND $timeFilter GROUP BY \"task\"", fmt="table")],
           "transformations": [{"id": "merge", "options": {}}],
           "fieldConfig": {"defaults": {"decimals": 3}, "overrides": []}, "options": {"showHeader": True}})

serving = dashboard("gpuorch-serving", "gpuorch — serving experiments",
                    "gpuorch serving metrics (docs/metrics.md) from InfluxDB 1.8 via InfluxQL. Pick an experiment and tasks.",
                    ["gpuorch", "serving"], serving_vars, sp)

TR = '"experiment" =~ /^$experiment$/ AND "task" =~ /^$task$/'
TW = TR + ' AND "tag" = \'train_inner\''
TV = TR + ' AND "tag" =~ /^valid/'   # valid, valid_<subset>, valid/<subset>
TG = 'GROUP BY time($__interval), "task" fill(none)'
def tsel(fields, group=TG, where=TW):
    return f'SELECT {fields} FROM "training" WHERE {where} AND $timeFilter {group}'
training_vars = [
    var("experiment", "Experiment", 'SHOW TAG VALUES FROM "training" WITH KEY = "experiment"', multi=False, include_all=False),
    var("task", "Task", 'SHOW TAG VALUES FROM "training" WITH KEY = "task" WHERE "experiment" =~ /^$experiment$/'),
]
tp = []
tp.append(ts(1, "Throughput (tokens/s, wps)", "Metaseq train_inner wps: words (tokens) per second across all GPUs.",
             [target(tsel('mean("wps")'), alias="$tag_task")], "short", 0, 0))
tp.append(ts(2, "Updates/s (ups)", "Optimizer updates per second.", [target(tsel('mean("ups")'), alias="$tag_task")], "short", 12, 0))
tp.append(ts(3, "Loss (bits/token)", "Training loss from train_inner lines.", [target(tsel('mean("loss")'), alias="$tag_task")], "short", 0, 8))
tp.append(ts(4, "Perplexity", "ppl from train_inner lines.", [target(tsel('mean("ppl")'), alias="$tag_task")], "short", 12, 8))
tp.append(ts(5, "Learning rate", "lr schedule.", [target(tsel('mean("lr")'), alias="$tag_task")], "sci", 0, 16))
tp.append(ts(6, "Gradient norm", "gnorm before clipping.", [target(tsel('mean("gnorm")'), alias="$tag_task")], "short", 12, 16))
tp.append(ts(7, "GPU memory (GB)", "CUDA memory allocated and reserved per rank 0.",
             [target(tsel('max("cuda_gb_allocated") AS "allocated", max("cuda_gb_reserved") AS "reserved"'), alias="$tag_task $col")], "decgbytes", 0, 24))
tp.append(ts(8, "Progress (num_updates)", "Optimizer steps done.", [target(tsel('last("num_updates")'), alias="$tag_task")], "short", 12, 24))
tp.append(ts(9, "Validation loss (bits/token)", "Loss of each validation subset (valid, valid/<subset>, valid/combined lines; keys without the tag prefix), beside the training loss.",
             [target(tsel('mean("loss")', where=TV, group='GROUP BY time($__interval), "task", "tag" fill(none)'), alias="$tag_task $tag_tag"),
              target(tsel('mean("loss")'), ref="B", alias="$tag_task train_inner")], "short", 0, 32))
tp.append(ts(10, "Diverged lines", "Progress lines whose loss was inf or NaN (field diverged): the first one is where the run diverged. Empty for a healthy run.",
             [target(tsel('count("diverged")', where=TR + ' AND "diverged" = true'), alias="$tag_task")], "short", 12, 32))
training = dashboard("gpuorch-training", "gpuorch — training runs",
                     "Metaseq training metrics parsed from the training log (measurement training; tag=train_inner, valid…, train).",
                     ["gpuorch", "training"], training_vars, tp, rng="now-24h")

for name, d in [("serving.json", serving), ("training.json", training)]:
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), name), "w") as f:
        json.dump(d, f, indent=2)
        f.write("\n")
