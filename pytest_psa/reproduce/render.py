"""The reproduction's tables (the paper's layout, the paper's numbers beside and marked), as terminal text and markdown.

A table is (title, notes, header, rows) of strings; `terminal` aligns it, `markdown` pipes it. Cells of
the tool read ``value [low, high]`` (two-sided 1 - alpha); the paper's rows start with "paper:" and
hold only the paper's numbers (WideResNet-40-2, 200 epochs; Table 1 on CIFAR-100).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_psa.reproduce import paper as P
from pytest_psa.reproduce.analysis import AGREES, DISAGREES, INCONCLUSIVE, NOT_RUN, REFUSED
from pytest_psa.reproduce.design import ARMS, FLATNESS_KEYS, PAPER_GAMMA, TOOL_GAMMA, Design


@dataclass(frozen=True)
class Table:
    title: str
    notes: tuple[str, ...]
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def _num(x: Any, fmt: str = ".4f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(float(x), fmt)


def _iv(est: Any, low: Any, high: Any, fmt: str = ".4f", scale: float = 1.0) -> str:
    if est is None:
        return "n/a"
    s = _num(float(est) * scale, fmt)
    if low is None or high is None:
        return s
    return f"{s} [{_num(float(low) * scale, fmt)}, {_num(float(high) * scale, fmt)}]"


def _label(key: str) -> str:
    return ARMS[key].label if key in ARMS else key


def _pv(v: float | None, fmt: str = ".2f") -> str:
    return "" if v is None else format(v, fmt)


# -- Table 1 ---------------------------------------------------------------------------------------
def table1(raw: Mapping[str, Any], design: Design) -> Table:
    arms = [k for k in design.arms if (raw["arms"][k].get("density") or {})]
    header = ("γ (distance)", *(_label(k) for k in arms))
    rows: list[tuple[str, ...]] = []
    for scale in ("paper", "tool"):
        gammas = sorted({e["gamma"] for k in arms for e in raw["arms"][k]["density"][scale]["ecdf"]})
        for g in gammas:
            cells = []
            for k in arms:
                e = next((e for e in raw["arms"][k]["density"][scale]["ecdf"] if e["gamma"] == g), None)
                cells.append("" if e is None else _iv(e["estimate"], e["low"], e["high"]))
            dist = raw["arms"][arms[0]]["density"][scale]["distance"]
            rows.append((f"{g:g} ({dist})", *cells))
            if scale == "paper" and g in P.TABLE1["gammas"]:
                rows.append((f"paper: {g:g}", *(_pv(P.paper_value("1", str(g), k), ".4f") for k in arms)))
    rows.append((f"PSA F({TOOL_GAMMA:g}) (tool's check)",
                 *(str((raw["arms"][k]["density"].get("psa_verdict") or {}).get("outcome", "")) for k in arms)))
    d0 = raw["arms"][arms[0]]["density"]["tool"]
    notes = (f"tool: {design.data}, {d0['n_images']} test images x {d0['draws']} draws, seed 0; F [two-sided "
             f"{100 * (1 - design.alpha):.0f}% interval, images as units]",
             f"paper: {P.TABLE1['where']}, {P.TABLE1['data']}; {P.TABLE1['reading']}",
             "the paper's DeepAug and StyleAug are the real methods; the tool's columns are stand-ins")
    return Table("Table 1: proximal density F(γ) at the paper's scale (l2_255) and the tool's (l2)", notes, header,
                 tuple(rows))


# -- Table 2 ---------------------------------------------------------------------------------------
def _vs(raw: Mapping[str, Any], subject: str, baseline: str = "erm") -> Any:
    pair = raw["pairs"].get(f"{subject} vs {baseline}")
    return None if pair is None or "refused" in pair else pair  # refused pairs: in the claim table and summary


def _flat_cell(f: Mapping[str, Any] | None, side: str = "augmented") -> str:
    if not f:
        return "n/a"
    if "error" in f:
        return f"error: {f['error'][:40]}"
    v = sum(f[side]) / len(f[side])
    if side == "erm":
        return f"{v:.4g}"
    return f"{v:.4g} ({100 * f['improvement']:+.1f}% [{_num(_pct(f['low']), '+.1f')}, {_num(_pct(f['high']), '+.1f')}])"


def _pct(x: Any) -> float | None:
    return None if x is None else 100 * float(x)


def table2(raw: Mapping[str, Any], design: Design, arms: Sequence[str] | None = None, baseline: str = "erm",
           title: str = "Table 2: flatness vs ERM (lower is flatter)", table: str = "2") -> Table:
    arms = [a for a in (arms or [a for a in design.arms if a != "erm"]) if _vs(raw, a, baseline)]
    header = (f"metric", _label(baseline), *(_label(k) for k in arms))
    rows: list[tuple[str, ...]] = []
    paper_rows = P.TABLES[table]["values"]
    for fk in design.flatness_keys:
        first = next((_vs(raw, a, baseline)["flatness"].get(fk) for a in arms
                      if "erm" in (_vs(raw, a, baseline)["flatness"].get(fk) or {})), None)
        rows.append((fk, _flat_cell(first, "erm"),
                     *(_flat_cell(_vs(raw, a, baseline)["flatness"].get(fk)) for a in arms)))
        pk = fk.split("(")[0]
        if pk in paper_rows and (fk == "pac_bayes(target=loss)" or "(" not in fk or fk == "lpf(bisla)"):
            rows.append((f"paper: {pk}", _pv(P.paper_value(table, pk, baseline)),
                         *(_pv(P.paper_value(table, pk, a)) for a in arms)))
    for what, side_key in (("clean train loss (nats)", "loss"), ("final train loss (nats)", "final_loss"),
                           ("epochs trained (seed mean)", "epochs"), ("training wall s per model (recorded)", "wall_s")):
        cells = []
        base_cell = "n/a"
        for a in arms:
            t = _vs(raw, a, baseline)["training"] or {}
            if side_key == "loss":
                rec = t.get("loss") or {}
                cells.append(_num(rec.get("subject_mean"), ".3f"))
                base_cell = _num(rec.get("baseline_mean"), ".3f")
            else:
                fl = t.get(side_key) or {}
                spec = ".3f" if side_key == "final_loss" else ".1f" if side_key == "epochs" else ".0f"
                cells.append(_num(_avg(fl.get("subject")), spec))
                base_cell = _num(_avg(fl.get("baseline")), spec)
        rows.append((what, base_cell, *cells))
    notes = (f"tool: {design.data}, preset {design.preset}, model {design.model or 'the preset`s'}, seeds "
             f"{list(design.seeds)}, {design.n_measure} training images measured; cell: seed mean (improvement "
             f"1 - exp(-mean log(baseline/subject)) [two-sided {100 * (1 - design.alpha):.0f}%]), > 0 = flatter",
             "pac_bayes(target=loss): σ where the loss rises by the target (LPF-SGD repository); "
             "target=accuracy: the 0-1 error (Jiang et al. 2020); lpf(bisla): Bisla et al.'s normalization",
             f"paper: {P.TABLES[table]['where']}, {P.SETUP}; {P.TABLES[table]['reading']}")
    return Table(title, notes, header, tuple(rows))


def _avg(v: Any) -> float | None:
    return None if not v or None in v else sum(v) / len(v)


# -- Table 3 ---------------------------------------------------------------------------------------
_ROB_ROWS = (("clean error (%)", "clean_error"), ("mCE (%, unnormalized)", "mce"),
             ("relative mCE vs baseline (H&D)", "hd_relative_mce"), ("mCE ratio vs baseline", "mce_ratio"),
             ("mFP (%)", "mfp"))


def _rob_cell(m: Mapping[str, Any], name: str) -> str:
    v = m.get(name)
    if v is None:
        return "n/a"
    if name in ("hd_relative_mce", "mce_ratio"):
        return _iv(v["estimate"], v["low"], v["high"], ".3f")
    d = m.get(f"delta_{name}")
    cell = _num(_pct(v["estimate"]), ".2f")
    return cell if d is None else f"{cell} ({_iv(d['estimate'], d['low'], d['high'], '+.2f', 100)})"


def table3(raw: Mapping[str, Any], design: Design, arms: Sequence[str] | None = None, baseline: str = "erm",
           title: str = "Table 3: robustness vs ERM (errors in %, lower is better)", table: str = "3") -> Table:
    arms = [a for a in (arms or [a for a in design.arms if a != "erm"]) if _vs(raw, a, baseline)]
    if not arms:
        return Table(title, ("no arm ran",), ("",), ())
    attacks = _vs(raw, arms[0], baseline)["robustness"]["attacks"]
    rows_def = list(_ROB_ROWS) + [(f"PGD {a} error (%)", f"adv_error({a})") for a in attacks]
    header = ("metric", _label(baseline), *(_label(a) for a in arms))
    rows: list[tuple[str, ...]] = []
    paper_map = {"mce": "mce", "mfp": "mfp"}
    # the paper's two PGD rows go beside the paper's budgets only (its text lost which is which: our reading)
    for label, row in zip(_paper_attack_labels(), ("pgd_a", "pgd_b")):
        if label in attacks:
            paper_map[f"adv_error({label})"] = row
    pv = P.TABLES[table]["values"]
    for label, name in rows_def:
        m0 = _vs(raw, arms[0], baseline)["robustness"]["metrics"]
        b = m0.get(f"baseline_{name}")
        base_cell = "" if b is None else _num(_pct(b["estimate"]), ".2f")
        rows.append((label, base_cell, *(_rob_cell(_vs(raw, a, baseline)["robustness"]["metrics"], name)
                                         for a in arms)))
        if name in paper_map and paper_map[name] in pv:
            rows.append((f"paper: {label}", _pv(P.paper_value(table, paper_map[name], baseline)),
                         *(_pv(P.paper_value(table, paper_map[name], a)) for a in arms)))
    notes = (f"tool: {design.data}, preset {design.preset}, seeds {list(design.seeds)}; corruptions: CIFAR-10-C's 15 "
             f"x 5 severities on {design.n_images} test images, PGD on {design.n_attack_images}; cell: value "
             f"(subject - baseline in pp [two-sided {100 * (1 - design.alpha):.0f}%, paired over images])",
             f"attacks: {', '.join(a for a in attacks if a in _paper_attack_labels()) or 'none'} at the paper's "
             f"budgets (its text lost the symbols: its two PGD rows are shown beside these), "
             f"{', '.join(a for a in attacks if a not in _paper_attack_labels()) or 'none'} at budgets that "
             "separate undefended small models",
             f"paper: {P.TABLES[table]['where']}, {P.SETUP}; {P.TABLES[table]['reading']}")
    return Table(title, notes, header, tuple(rows))


def _paper_attack_labels() -> list[str]:
    from pytest_psa._specs.attacks import resolve_attacks
    from pytest_psa.reproduce.design import PAPER_ATTACKS

    return [a.label for a in resolve_attacks(list(PAPER_ATTACKS))]


def table7(raw: Mapping[str, Any], design: Design) -> Table:
    arms = ["augmix", "deepaugment-standin", "styleaug-standin-randconv", "deepaugment-standin|augmix",
            "styleaug-standin-randconv|augmix", "deepaugment-standin|styleaug-standin-randconv"]
    t = table3(raw, design, arms, title="Table 7: augmentation pairings (errors in %, Δ vs ERM)", table="7")
    return Table(t.title, t.notes + ("the paired claims (DeepAug + AugMix vs DeepAug, ...) are in the claim table",),
                 t.header, t.rows)


def table8(raw: Mapping[str, Any], design: Design) -> list[Table]:
    out = []
    if _vs(raw, "fgsm_at+augmix", "fgsm_at"):
        out.append(table2(raw, design, ["fgsm_at+augmix"], "fgsm_at",
                          "Table 8 (flatness): AT vs AT + AugMix (lower is flatter)", "8"))
        out.append(table3(raw, design, ["fgsm_at+augmix"], "fgsm_at",
                          "Table 8 (robustness): AT vs AT + AugMix (errors in %)", "8"))
    return out


# -- claims, correlations, predictors, timings -------------------------------------------------------
def table3_domains(raw: Mapping[str, Any], design: Design) -> Table | None:
    """Table 3's domain-shift rows: held-out accuracy averaged over held-out domains (DomainBed's
    protocol, the tool's model and preset) per augmentation, vs ERM, with the paper's PACS / OfficeHome
    numbers beside; None when the run audited no domains."""
    runs = raw.get("domains") or {}
    if not runs:
        return None
    header = ("augmentation", "held-out acc (%)", "ERM held-out acc (%)", "Δ vs ERM (pp)", "in-domain acc (%)",
              "paper: PACS (%)", "paper: OfficeHome (%)")
    rows: list[tuple[str, ...]] = []
    held: list[str] = []
    for key, r in runs.items():
        pacs, office = (P.paper_value("3d", data, key) for data in ("PACS", "OfficeHome"))
        paper = (_pv(pacs, ".1f"), _pv(office, ".1f"))
        if "refused" in r:
            rows.append((_label(key), f"refused (sanity gate): {r['refused']}", "", "", "", *paper))
            continue
        held = held or list(r["held_out"])
        a = r["averages"]
        cell = [_iv(a[n]["estimate"], a[n]["low"], a[n]["high"], ".1f", 100.0) for n in (
            "accuracy_heldout", "erm_accuracy_heldout", "delta_accuracy_heldout", "accuracy_indomain")]
        rows.append((_label(key), *cell, *paper))
    notes = (f"tool: {design.domains}, held-out domains {', '.join(held) or 'n/a'}, preset {design.preset}, "
             f"seeds {list(design.seeds)}; averages over held-out domains, intervals two-sided "
             f"{100 * (1 - design.alpha):.0f}% (each domain's bound at alpha / m, averaged)",
             "paper: ResNet-50, DomainBed protocol, 3 runs: "
             f"{P.TABLE3_DOMAINS['where']}, ERM at PACS {P.paper_value('3d', 'PACS', 'erm'):.1f} and OfficeHome "
             f"{P.paper_value('3d', 'OfficeHome', 'erm'):.1f}; a different data set, so the paper's columns are context")
    return Table("Table 3 (domain shift): leave one domain out, accuracy in % (higher is better)", notes, header,
                 tuple(rows))


def claims_table(claims: Sequence[Mapping[str, Any]]) -> Table:
    rows = []
    for c in claims:
        fmt, scale = (".3f", 1.0) if c.get("unit") == "rho" else (("+.1f", 100.0))
        edge = c.get("unit") == "rho" and on_edge({"rho": c.get("estimate"), "low": c.get("low"),
                                                  "high": c.get("high")})
        rows.append((c["text"], c["source"], _iv(c.get("estimate"), c.get("low"), c.get("high"), fmt, scale)
                     + (" †" if edge else ""), c["verdict"]))
    return Table("Claim table: the paper's directional claims, measured",
                 ("gain of the subject over its baseline, > 0 = as claimed better (flatness: improvement in %; "
                  "robustness: error removed in pp; rho as is) [two-sided interval]",
                  "agrees: the interval excludes 0 on the claimed side; disagrees: on the other side; "
                  "inconclusive: it holds 0; not run: an arm of the claim was not in --arms, or it needs --domains",
                  "†: rho on or outside its bootstrap interval (see the correlation tables)"),
                 ("claim", "source", "gain [interval]", "verdict"), tuple(rows))


def on_edge(row: Mapping[str, Any]) -> bool:
    """Whether a correlation's rho lies on or outside its own percentile interval."""
    rho, low, high = row.get("rho"), row.get("low"), row.get("high")
    return rho is not None and low is not None and high is not None and not low < rho < high


def correlation_table(rows: Sequence[Mapping[str, Any]], family: str) -> Table:
    mine = [r for r in rows if r["family"] == family]
    out = [(r["predictor"], r["outcome"], str(r["n_arms"]),
            _iv(r["rho"], r["low"], r["high"], "+.3f") + (" †" if on_edge(r) else "")) for r in mine]
    what = "robustness gain over ERM" if family == "robustness" else "flatness improvement over ERM"
    edge = sum(on_edge(r) for r in mine)
    notes: tuple[str, ...] = (
        "rho of the seed means across the augmentation arms (SGD, vs ERM); interval: percentile bootstrap, "
        "each arm's seeds resampled with replacement",
        "flatness predictors are per-seed log(ERM/aug) (> 0 flatter); gains are pp of error removed")
    if edge:  # computed, not assumed: the reader should not take such an interval as a margin around rho
        notes += (f"†: {edge} of {len(mine)} rows have rho on or outside its interval. Rho is a step function of "
                  "the arms' ranks: where near-tied outcomes can only reorder one way under resampling (or tied "
                  "predictors hide a reordering), the resampled rho lie on one side of the estimate, and the "
                  "interval describes the resamples, not a margin around rho",)
    return Table(f"Correlation: each predictor vs {what} (Spearman rho across augmentations)", notes,
                 ("predictor", "outcome", "arms", "rho [interval]"), tuple(out))


def per_arm_table(per_arm: Mapping[str, Mapping[str, Any]]) -> Table:
    if not per_arm:
        return Table("Per-arm table", ("no augmentation arm ran",), ("",), ())
    names = list(next(iter(per_arm.values())))
    rows = tuple((_label(k), *(_num(v.get(n), ".4g") for n in names)) for k, v in per_arm.items())
    return Table("Per-arm table (seed means): what the correlations are computed from",
                 ("affinity and diversity: Gontijo-Lopes et al. 2020 (pytest_psa.measure.affinity)",),
                 ("arm", *names), rows)


def timings_table(timings: Mapping[str, Any]) -> Table:
    rows = tuple((name, f"{v['seconds']:.1f}", str(v["count"]), str(v["cached"]))
                 for name, v in timings["stages"].items())
    return Table("Wall time per stage", (f"total {timings['total_s']:.1f} s; trainings run (not cache hits): "
                                         f"{timings['trained']}",),
                 ("stage", "seconds", "count", "from cache"), rows)


def tables(report: Mapping[str, Any], design: Design) -> list[Table]:
    raw, an = report["raw"], report["analysis"]
    out = [table1(raw, design), table2(raw, design), table3(raw, design), table7(raw, design), *table8(raw, design),
           claims_table(an["claims"]), per_arm_table(an["per_arm"]), correlation_table(an["correlations"], "robustness"),
           correlation_table(an["correlations"], "flatness"), timings_table(raw["timings"])]
    domains = table3_domains(raw, design)
    if domains is not None:
        out.insert(3, domains)
    return out


def terminal(ts: Sequence[Table]) -> str:
    from pytest_psa.report.terminal import align

    lines: list[str] = []
    for t in ts:
        lines += ["", t.title, *(f"  {n}" for n in t.notes)]
        if t.rows:
            lines += align([t.header, *t.rows], indent="  ")
    return "\n".join(lines)


def markdown_table(t: Table) -> list[str]:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    out = [f"### {t.title}", "", *(f"- {n}" for n in t.notes), ""]
    if t.rows:
        out += [line(t.header), line(["---"] * len(t.header)), *(line(r) for r in t.rows), ""]
    return out


# -- the plain-words summary -------------------------------------------------------------------------
def _not_run_reasons(claims: Sequence[Mapping[str, Any]]) -> str:
    """Why claims were not run, counted: '3: needs a multi-domain set (--domains)'."""
    reasons: dict[str, int] = {}
    for c in claims:
        if c["verdict"] == NOT_RUN:
            why = c.get("reason") or "an arm of the claim was left out (--arms)"
            reasons[why] = reasons.get(why, 0) + 1
    return "; ".join(f"{n}: {why}" for why, n in reasons.items())


def summary(report: Mapping[str, Any], design: Design) -> list[str]:
    """What the tool found, in words, from the claim table (and what scale would decide the open rows)."""
    claims = report["analysis"]["claims"]
    counts = {v: sum(1 for c in claims if c["verdict"] == v)
              for v in (AGREES, DISAGREES, INCONCLUSIVE, NOT_RUN, REFUSED)}
    lines = [f"Of {len(claims)} directional claims, the tool's measurements agree with {counts[AGREES]}, disagree with "
             f"{counts[DISAGREES]} and decide neither way on {counts[INCONCLUSIVE]}"
             + (f"; {counts[NOT_RUN]} were not run ({_not_run_reasons(claims)})" if counts[NOT_RUN] else "")
             + (f"; {counts[REFUSED]} got no verdict because a model learned nothing (sanity gate)"
                if counts[REFUSED] else "") + "."]
    refused = {p: v["refused"].splitlines()[0] for p, v in report["raw"]["pairs"].items() if "refused" in v}
    for p, why in refused.items():
        lines.append(f"Refused: {p}: {why}")
    for v, word in ((AGREES, "Agrees"), (DISAGREES, "Disagrees")):
        picked = [c["text"] for c in claims if c["verdict"] == v]
        if picked:
            lines.append(f"{word}: " + "; ".join(picked) + ".")
    open_rows = [c for c in claims if c["verdict"] == INCONCLUSIVE and c.get("would_decide")]
    if open_rows:
        lines.append("Inconclusive, and the scale that would decide each if its estimate held:")
        for c in open_rows:
            lines.append(f"- {c['text']}: {c['would_decide']}")
    best = report["analysis"]["best_predictors"]
    for b in best:
        lines.append(f"Best predictor of {b['outcome']}: {b['predictor']} (rho {b['rho']:+.2f} "
                     f"[{_num(b['low'], '+.2f')}, {_num(b['high'], '+.2f')}]"
                     f"{'' if b['interval_excludes_0'] else ', interval holds 0: no predictor is shown'}).")
    return lines


__all__ = ["Table", "claims_table", "correlation_table", "markdown_table", "on_edge", "summary", "table1", "table2",
           "table3", "table3_domains", "table7", "table8", "tables", "terminal", "timings_table"]
