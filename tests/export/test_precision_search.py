"""The precision search's choice, on graphs whose cost per node is known: it keeps the fewest most sensitive
nodes, scores few whole graphs, verifies the graph it converts, and names the closest miss when nothing fits."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from segexport.precision.scoring import TrialScore
from segexport.precision.search import Budget, BudgetNotMet, search_precision


class Costs:
    """A model whose mIoU drop is the sum of the costs of the nodes left reduced (plus `floor`, which no node
    kept removes); disagreement is the drop / 100. `converted_penalty` is added to converted graphs only."""

    def __init__(self, costs: dict[str, float], floor: float = 0.0, converted_penalty: float = 0.0) -> None:
        self.costs = costs
        self.floor = floor
        self.converted_penalty = converted_penalty
        self.converted: list[tuple[str, ...]] = []
        self.scored: list[frozenset[str]] = []
        self.evaluation = SimpleNamespace(where="the test images")
        self.reference_miou = 0.9

    def reference_class_ious(self) -> None:
        return None

    # the KeepableGraph the search reads out of the reduced graph
    @property
    def units(self) -> tuple[str, ...]:
        return tuple(self.costs)

    def with_kept(self, kept) -> SimpleNamespace:
        return self._proto(kept, converted=False)

    def convert(self, kept, folder: Path) -> SimpleNamespace:
        assert folder.is_dir()
        self.converted.append(tuple(kept))
        return self._proto(kept, converted=True)

    def _proto(self, kept, *, converted: bool) -> SimpleNamespace:
        nodes = [SimpleNamespace(name=name, op_type="Conv") for name in self.costs]
        return SimpleNamespace(kept=frozenset(kept), converted=converted, graph=SimpleNamespace(node=nodes))

    # the TrialScorer
    def score(self, proto: SimpleNamespace, precision: str) -> TrialScore:
        self.scored.append(proto.kept)
        drop = self.floor + sum(cost for name, cost in self.costs.items() if name not in proto.kept)
        drop += self.converted_penalty if proto.converted else 0.0
        return TrialScore(miou=0.9 - drop / 100, miou_drop=drop, disagreement=drop / 100)


def _search(model: Costs, budget: Budget, tmp_path: Path):
    return search_precision(
        "int8-cpu",
        model.convert,
        lambda proto: model,
        model,
        budget,
        scratch=tmp_path,  # type: ignore[arg-type]
    )


def test_within_budget_at_once_keeps_nothing_and_measures_no_node(tmp_path: Path) -> None:
    model = Costs({"a": 0.1, "b": 0.2})
    result = _search(model, Budget(max_miou_drop=0.5), tmp_path)
    assert result.kept == () and result.sensitivities == []
    assert model.converted == [()] and len(model.scored) == 1
    assert result.final is not None and result.final.miou_drop == pytest.approx(0.3)


def test_keeps_the_fewest_most_sensitive_nodes(tmp_path: Path) -> None:
    costs = {f"n{i}": 0.01 for i in range(30)} | {"big": 3.0, "mid": 0.9, "small": 0.19}
    model = Costs(costs)
    result = _search(model, Budget(max_miou_drop=0.5), tmp_path)
    assert [s.node for s in result.sensitivities[:3]] == ["big", "mid", "small"]
    # 30 x 0.01 + 0.19 = 0.49: keeping big and mid is enough, and nothing fewer is
    assert result.kept == ("big", "mid")
    assert result.final is not None and result.final.miou_drop <= 0.5
    assert model.converted == [(), ("big", "mid")]  # one conversion for all trials, one for the graph written
    whole_graph = [trial for trial in result.trials if not trial.converted]
    assert len(whole_graph) <= 2 * math.ceil(math.log2(len(costs) + 1))  # doubling, then bisection
    assert len(model.scored) == 1 + len(costs) + len(whole_graph) + 1


def test_disagreement_budget_ranks_by_pixels_changed(tmp_path: Path) -> None:
    model = Costs({"a": 0.3, "b": 2.0, "c": 0.1})
    result = _search(model, Budget(max_disagreement=0.005), tmp_path)  # 0.5 % of pixels = drop 0.5
    assert result.kept == ("b",)


def test_a_converted_graph_that_misses_gets_one_more_node(tmp_path: Path) -> None:
    model = Costs({"a": 3.0, "b": 0.3, "c": 0.25}, converted_penalty=0.4)
    result = _search(model, Budget(max_miou_drop=0.5), tmp_path)
    # read out, keeping a and b loses 0.25; converted it loses 0.65, so c is kept too (0.4)
    assert result.kept == ("a", "b", "c")
    assert model.converted == [(), ("a", "b"), ("a", "b", "c")]
    assert result.final is not None and result.final.miou_drop == pytest.approx(0.4)


def test_budget_not_met_even_with_every_node_kept_names_the_closest(tmp_path: Path) -> None:
    model = Costs({"a": 1.0, "b": 0.5}, floor=0.8)
    with pytest.raises(BudgetNotMet) as caught:
        _search(model, Budget(max_miou_drop=0.5), tmp_path)
    message = str(caught.value)
    assert "even with all 2 INT8 nodes kept in FP32" in message
    assert "the closest keeps all and loses 0.80 mIoU points" in message
    assert "changes 0.800 % of pixels (read out of the all-INT8 graph)" in message  # how it was measured
    assert "on the test images" in message
    assert caught.value.exit_code == 2
    assert caught.value.result.sensitivities  # the table the user is shown still has every node


def test_converted_graphs_that_miss_a_budget_their_read_out_met_name_the_closest_converted(tmp_path: Path) -> None:
    model = Costs({"a": 3.0, "b": 0.3, "c": 0.1, "d": 0.05, "e": 0.02, "f": 0.01}, converted_penalty=1.0)
    with pytest.raises(BudgetNotMet) as caught:
        _search(model, Budget(max_miou_drop=0.5), tmp_path)
    # read out, keeping a loses 0.48; converted, keeping a, a+b, a+b+c loses 1.48, 1.18, 1.08
    assert model.converted == [(), ("a",), ("a", "b"), ("a", "b", "c")]
    message = str(caught.value)
    assert "even with all" not in message  # only 3 of the 6 nodes were ever kept in a converted graph
    assert "node(s) kept in FP32 it loses 0.48 mIoU points" in message and "(read out of the all-INT8 graph)" in message
    assert "but converted with 1 to 3 of 6 kept it misses" in message
    assert "the closest converted graph keeps 3 and loses 1.08 mIoU points" in message  # not the read-out 0.48
    assert "--keep-fp32 REGEX" in message and caught.value.exit_code == 2


def test_both_budgets_must_hold() -> None:
    budget = Budget(max_miou_drop=1.0, max_disagreement=0.01)
    assert budget.met(TrialScore(miou=0.9, miou_drop=0.5, disagreement=0.005))
    assert not budget.met(TrialScore(miou=0.9, miou_drop=0.5, disagreement=0.02))
    assert not budget.met(TrialScore(miou=0.9, miou_drop=1.5, disagreement=0.005))
    assert not Budget(max_miou_drop=1.0).met(TrialScore(miou=None, miou_drop=None, disagreement=0.0))
    with pytest.raises(ValueError):
        Budget()
