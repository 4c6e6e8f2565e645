"""Boosted models as flat numpy tables: one row walked or looked up in ~0.02-0.07 ms.

Two shapes, both pure functions of the fitted model (no I/O), shared by the service's
compiled path (app/compiled.py) and the explainer (stroke_risk/models/explain.py) so the two
cannot disagree about which leaf or step a row reaches:

- ``BoostedTrees``: an XGBoost ``binary:logistic`` booster as node arrays. ``leaves``
  repeats XGBoost's own walk (features cast to float32, ``x < split`` goes to the left
  child, a missing value to the default child); ``margin`` adds the leaf values to the
  base margin in float32, tree by tree, as XGBoost's CPU predictor does (bit-exact on
  every row of both shipped CSVs; the service still takes the probability from XGBoost's
  ``inplace_predict``, whose float32 sigmoid uses the C library's ``expf``).
  ``node_credit`` holds each leaf's Saabas path credit per design-matrix column:
  XGBoost's ``pred_contribs(approx_contribs=True)`` computed once per leaf in float64.
- ``StepFunctions``: a sum of one step function per design-matrix column, which is what a
  HistGradientBoosting model whose trees each split on one column (``interaction_cst=
  "no_interactions"``) and an Explainable Boosting Machine without interactions are. Each
  column's trees (or bins) are merged once into sorted thresholds and the summed value of
  every interval, so scoring a row is one lookup per column.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

# Below this many (rows x trees) the booster is walked for all trees at once in numpy;
# above it XGBoost's own C++ leaf prediction is cheaper.
BOOSTER_VECTOR_LIMIT = 50_000
# Below this many (rows x thresholds) step functions are looked up by one comparison of
# every threshold at once; above it one binary search per column is cheaper.
STEP_VECTOR_LIMIT = 200_000


@dataclass(frozen=True)
class BoostedTrees:
    """An XGBoost binary:logistic booster's trees (the iteration range predict_proba uses)
    as flat node arrays; leaves point at themselves so extra walk steps keep them."""

    booster: Any
    iteration_range: tuple[int, int]
    base_margin: np.float32
    roots: np.ndarray
    feature: np.ndarray
    split: np.ndarray  # float32
    default_left: np.ndarray
    left: np.ndarray
    right: np.ndarray
    leaf_value: np.ndarray  # float32, 0 on inner nodes
    node_credit: np.ndarray  # (n_nodes, n_columns) float64 Saabas credit of each leaf
    root_mean: np.ndarray  # cover-weighted mean leaf value of each tree's root
    depth: int

    def probability(self, X: np.ndarray) -> np.ndarray:
        """Return P(class 1) per row as float64: the booster's own inplace_predict, exactly
        what XGBClassifier.predict_proba runs on numpy input (missing values are NaN)."""
        value = self.booster.inplace_predict(
            X,
            iteration_range=self.iteration_range,
            predict_type="value",
            missing=math.nan,
            validate_features=False,
        )
        return np.asarray(value, dtype=np.float64).reshape(-1)

    @property
    def base_value(self) -> float:
        """The bias of approx_contribs: base margin plus every tree's root mean."""
        return float(self.base_margin) + float(np.sum(self.root_mean))

    def leaves(self, X: np.ndarray) -> np.ndarray:
        """Return the global node id of the leaf each row reaches in each tree."""
        X32 = np.ascontiguousarray(X, dtype=np.float32)
        n_rows, n_trees = X32.shape[0], len(self.roots)
        if n_rows * n_trees > BOOSTER_VECTOR_LIMIT:
            return self._leaves_by_xgboost(X32)
        node = np.repeat(self.roots[np.newaxis, :], n_rows, axis=0)
        rows = np.arange(n_rows)[:, np.newaxis]
        for _ in range(self.depth):
            values = X32[rows, self.feature[node]]
            # NaN < split is False: missing values follow default_left explicitly.
            go_left = np.where(np.isnan(values), self.default_left[node], values < self.split[node])
            node = np.where(go_left, self.left[node], self.right[node])
        return node

    def _leaves_by_xgboost(self, X32: np.ndarray) -> np.ndarray:
        import xgboost

        data = xgboost.DMatrix(X32, nthread=1)
        local = self.booster.predict(
            data, pred_leaf=True, iteration_range=self.iteration_range, validate_features=False
        )
        return np.asarray(local, dtype=np.intp).reshape(len(X32), -1) + self.roots

    def margin(self, leaves: np.ndarray) -> np.ndarray:
        """Return XGBoost's float32 margin of the rows (base margin, then tree by tree)."""
        terms = np.empty((len(leaves), len(self.roots) + 1), dtype=np.float32)
        terms[:, 0] = self.base_margin
        terms[:, 1:] = self.leaf_value[leaves]
        # cumsum adds left to right in float32, like the predictor's per-tree +=.
        return np.cumsum(terms, axis=1, dtype=np.float32)[:, -1]

    def credit(self, leaves: np.ndarray) -> np.ndarray:
        """Return the Saabas contribution of every design-matrix column, per row (float64)."""
        return self.node_credit[leaves].sum(axis=1)


def _booster_document(booster: Any) -> dict[str, Any]:
    document = json.loads(booster.save_raw("json"))
    learner = document["learner"]
    if learner["objective"]["name"] != "binary:logistic":
        raise ValueError(f"XGBoost objective {learner['objective']['name']}, not binary:logistic")
    if int(learner["learner_model_param"].get("num_target", "1")) != 1:
        raise ValueError("multi-target XGBoost model")
    return learner


def _parents_first(left: np.ndarray, right: np.ndarray) -> list[int]:
    """Node ids reachable from the root (0), every parent before its children."""
    order, position = [0], 0
    while position < len(order):
        node = order[position]
        if left[node] >= 0:
            order += [int(left[node]), int(right[node])]
        position += 1
    return order


def _node_means(tree: dict[str, Any]) -> np.ndarray:
    """XGBoost's FillNodeMeanValues: a leaf's value, an inner node's cover-weighted mean
    of its children's means (float64 here, float32 in XGBoost)."""
    left = np.asarray(tree["left_children"])
    right = np.asarray(tree["right_children"])
    value = np.asarray(tree["split_conditions"], dtype=np.float32).astype(np.float64)
    cover = np.asarray(tree["sum_hessian"], dtype=np.float64)
    means = np.where(left < 0, value, 0.0)
    for node in reversed(_parents_first(left, right)):
        if left[node] >= 0:
            means[node] = (
                means[left[node]] * cover[left[node]] + means[right[node]] * cover[right[node]]
            ) / cover[node]
    return means


def boosted_trees(model: Any) -> BoostedTrees:
    """Return the flat tables of a fitted XGBClassifier (binary:logistic, numeric splits,
    missing values as NaN); raise ValueError for anything else."""
    missing = getattr(model, "missing", math.nan)
    if not (isinstance(missing, float) and math.isnan(missing)):
        raise ValueError("XGBoost model whose missing value is not NaN")
    begin, end = model._get_iteration_range(None)
    return boosted_trees_of_booster(model.get_booster(), (int(begin), int(end)))


def boosted_trees_of_booster(booster: Any, iteration_range: tuple[int, int]) -> BoostedTrees:
    """Return the flat tables of an xgboost.Booster (binary:logistic, numeric splits) over
    the iteration range XGBClassifier.predict_proba uses; raise ValueError otherwise.

    The booster may come from the classifier or from its own UBJSON/JSON model bytes (the
    serving artifact, stroke_risk/models/serving_artifact.py): the tables are the same."""
    learner = _booster_document(booster)
    booster_model = learner["gradient_booster"]["model"]
    n_columns = int(learner["learner_model_param"]["num_feature"])
    base_score = float(learner["learner_model_param"]["base_score"].strip("[]"))
    begin, end = iteration_range
    indptr = booster_model["iteration_indptr"]
    end = end if end > 0 else len(indptr) - 1
    trees = booster_model["trees"][indptr[begin] : indptr[end]]
    if not trees:
        raise ValueError("XGBoost model without trees")
    roots, features, splits, defaults, lefts, rights, leaf_values = [], [], [], [], [], [], []
    credits, root_means, depths = [], [], []
    offset = 0
    for tree in trees:
        if any(kind != 0 for kind in tree["split_type"]):
            raise ValueError("XGBoost model with categorical splits")
        left = np.asarray(tree["left_children"], dtype=np.intp)
        right = np.asarray(tree["right_children"], dtype=np.intp)
        leaf = left < 0
        index = np.arange(len(left))
        condition = np.asarray(tree["split_conditions"], dtype=np.float32)
        feature = np.where(leaf, 0, np.asarray(tree["split_indices"], dtype=np.intp))
        means = _node_means(tree)
        # Saabas credit: each step from a node to its child credits the node's split column
        # with the change of the mean; a leaf's credit is the sum along its path.
        credit = np.zeros((len(left), n_columns))
        depth = np.zeros(len(left), dtype=np.intp)
        for node in _parents_first(left, right):
            if not leaf[node]:
                for child in (left[node], right[node]):
                    credit[child] = credit[node]
                    credit[child, feature[node]] += means[child] - means[node]
                    depth[child] = depth[node] + 1
        roots.append(offset)
        features.append(feature)
        splits.append(np.where(leaf, np.float32(0), condition))
        defaults.append(np.asarray(tree["default_left"], dtype=bool))
        lefts.append(offset + np.where(leaf, index, left))
        rights.append(offset + np.where(leaf, index, right))
        leaf_values.append(np.where(leaf, condition, np.float32(0)))
        credits.append(credit)
        root_means.append(means[0])
        depths.append(int(depth.max()))
        offset += len(left)
    return BoostedTrees(
        booster=booster,
        iteration_range=(begin, end),
        # XGBoost's ProbToMargin of the base score, rounded to float32 as it stores it.
        base_margin=np.float32(-math.log(1.0 / float(np.float32(base_score)) - 1.0)),
        roots=np.asarray(roots, dtype=np.intp),
        feature=np.concatenate(features),
        split=np.concatenate(splits).astype(np.float32),
        default_left=np.concatenate(defaults),
        left=np.concatenate(lefts),
        right=np.concatenate(rights),
        leaf_value=np.concatenate(leaf_values).astype(np.float32),
        node_credit=np.concatenate(credits),
        root_mean=np.asarray(root_means),
        depth=max(depths),
    )


@dataclass(frozen=True)
class StepFunctions:
    """raw score = constant + sum over columns j of step_j(X[:, j]).

    Column j's step function has sorted ``thresholds[j]`` and ``values[j]`` (one more
    value than thresholds): a value x gets ``values[j][k]`` where k is the number of
    thresholds strictly below x (``x <= threshold`` goes left, as HistGradientBoosting's
    predictor compares float64 values with its float64 ``num_threshold``), and a missing
    value gets ``missing[j]``. ``centres[j]`` is the training-count-weighted mean of the
    column's trees' leaves, which the explainer moves into the base value.
    """

    constant: float
    n_columns: int
    columns: np.ndarray  # the columns that have splits
    thresholds: tuple[np.ndarray, ...]
    values: tuple[np.ndarray, ...]
    missing: np.ndarray
    centres: np.ndarray  # (n_columns,)
    # The same tables flattened, for the all-thresholds-at-once lookup.
    flat_thresholds: np.ndarray
    flat_column: np.ndarray
    starts: np.ndarray
    value_offsets: np.ndarray
    flat_values: np.ndarray

    def column_scores(self, X: np.ndarray) -> np.ndarray:
        """Return step_j(X[:, j]) for every row and column: (n_rows, n_columns) float64."""
        X = np.asarray(X, dtype=np.float64)
        scores = np.zeros((len(X), self.n_columns))
        if not len(self.columns) or not len(X):
            return scores
        used = X[:, self.columns]
        if len(X) * len(self.flat_thresholds) <= STEP_VECTOR_LIMIT:
            above = X[:, self.flat_column] > self.flat_thresholds
            counts = np.add.reduceat(above, self.starts, axis=1, dtype=np.intp)
            looked_up = self.flat_values[self.value_offsets + counts]
        else:
            looked_up = np.empty_like(used)
            for position, (thresholds, values) in enumerate(
                zip(self.thresholds, self.values, strict=True)
            ):
                looked_up[:, position] = values[np.searchsorted(thresholds, used[:, position])]
        missing = np.isnan(used)
        if missing.any():
            looked_up = np.where(missing, self.missing, looked_up)
        scores[:, self.columns] = looked_up
        return scores

    def raw(self, scores: np.ndarray) -> np.ndarray:
        """Return the raw score (log-odds) of rows from column_scores."""
        return self.constant + scores.sum(axis=1)


def _hgb_tree_values(nodes: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Leaf value each row of X reaches in one HistGradientBoosting tree, as its Cython
    predictor decides: NaN follows missing_go_to_left, else ``x <= num_threshold`` left."""
    node = np.zeros(len(X), dtype=np.intp)
    leaf = nodes["is_leaf"].astype(bool)
    while not leaf[node].all():
        current = nodes[node]
        values = X[np.arange(len(X)), current["feature_idx"]]
        go_left = np.where(
            np.isnan(values),
            current["missing_go_to_left"].astype(bool),
            values <= current["num_threshold"],
        )
        child = np.where(go_left, current["left"], current["right"]).astype(np.intp)
        node = np.where(leaf[node], node, child)
    return nodes["value"][node].astype(np.float64)


def hgb_step_functions(model: Any) -> StepFunctions:
    """The step functions of a fitted HistGradientBoostingClassifier whose trees each split
    on one column; ValueError for anything else (several columns per tree, categorical
    splits, several classes)."""
    if model.n_trees_per_iteration_ != 1:
        raise ValueError("multi-class HistGradientBoosting model")
    if getattr(model, "is_categorical_", None) is not None and np.any(model.is_categorical_):
        raise ValueError("HistGradientBoosting model with categorical features")
    n_columns = int(model.n_features_in_)
    constant = float(np.ravel(model._baseline_prediction)[0])
    by_column: dict[int, list[np.ndarray]] = {}
    centres = np.zeros(n_columns)
    for iteration in model._predictors:
        for predictor in iteration:
            nodes = predictor.nodes
            leaf = nodes["is_leaf"].astype(bool)
            if np.any(nodes["is_categorical"][~leaf]):
                raise ValueError("HistGradientBoosting tree with a categorical split")
            columns = set(nodes["feature_idx"][~leaf].tolist())
            if len(columns) > 1:
                raise ValueError("a HistGradientBoosting tree splits on several columns")
            if not columns:  # a single leaf: a constant
                constant += float(nodes["value"][0])
                continue
            column = columns.pop()
            by_column.setdefault(column, []).append(nodes)
            centres[column] += float(
                np.sum(nodes["value"][leaf] * nodes["count"][leaf]) / np.sum(nodes["count"][leaf])
            )
    steps: dict[int, tuple[np.ndarray, np.ndarray, float]] = {}
    for column, trees in by_column.items():
        thresholds = np.unique(
            np.concatenate([t["num_threshold"][~t["is_leaf"].astype(bool)] for t in trees])
        ).astype(np.float64)
        # Interval k is (thresholds[k-1], thresholds[k]]: thresholds[k] lies in it, and +inf
        # lies in the last; every tree decides alike for all points of one interval.
        probe = np.zeros((len(thresholds) + 2, n_columns))
        probe[:, column] = np.concatenate([thresholds, [np.inf, np.nan]])
        summed = np.zeros(len(probe))
        for nodes in trees:  # tree order, as sklearn adds them
            summed += _hgb_tree_values(nodes, probe)
        steps[column] = (thresholds, summed[:-1], float(summed[-1]))
    return _assemble(constant, n_columns, steps, centres)


def ebm_step_functions(model: Any) -> StepFunctions:
    """An ExplainableBoostingClassifier's term scores (no interactions) as step functions.
    interpret bins a value x into 1 + #(cuts <= x) (missing: bin 0); #(cuts <= x) is
    #(t < x) for t the float64 just below each cut, so the thresholds are those.
    Contributions are the term scores themselves (interpret centres them at fit time): no
    centres."""
    n_columns = int(model.n_features_in_)
    if np.ndim(model.intercept_) and np.size(model.intercept_) != 1:
        raise ValueError("multi-class Explainable Boosting model")
    if getattr(model, "link_", "logit") != "logit":
        raise ValueError(f"Explainable Boosting model with link {model.link_!r}")
    steps: dict[int, tuple[np.ndarray, np.ndarray, float]] = {}
    for term, scores in zip(model.term_features_, model.term_scores_, strict=True):
        if len(term) != 1:
            raise ValueError("Explainable Boosting model with interaction terms")
        (column,) = term
        if model.feature_types_in_[column] != "continuous" or column in steps:
            raise ValueError("Explainable Boosting term that is not one continuous column")
        cuts = np.asarray(model.bins_[column][0], dtype=np.float64)
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (len(cuts) + 3,):
            raise ValueError("Explainable Boosting term scores do not match its bins")
        if len(cuts):
            thresholds = np.nextafter(cuts, -np.inf)
            values = scores[1 : len(cuts) + 2]
        else:  # one bin: a threshold no finite value exceeds
            thresholds, values = np.array([np.inf]), np.repeat(scores[1], 2)
        steps[column] = (thresholds, values, float(scores[0]))
    constant = float(np.ravel(model.intercept_)[0])
    return _assemble(constant, n_columns, steps, np.zeros(n_columns))


def _assemble(
    constant: float,
    n_columns: int,
    steps: dict[int, tuple[np.ndarray, np.ndarray, float]],
    centres: np.ndarray,
) -> StepFunctions:
    """StepFunctions from column -> (thresholds, values, missing value)."""
    columns = sorted(steps)
    all_thresholds = [steps[column][0] for column in columns]
    all_values = [steps[column][1] for column in columns]
    sizes = np.asarray([len(t) for t in all_thresholds], dtype=np.intp)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
    return StepFunctions(
        constant=constant,
        n_columns=n_columns,
        columns=np.asarray(columns, dtype=np.intp),
        thresholds=tuple(all_thresholds),
        values=tuple(all_values),
        missing=np.asarray([steps[column][2] for column in columns], dtype=np.float64),
        centres=centres,
        flat_thresholds=np.concatenate(all_thresholds) if all_thresholds else np.empty(0),
        flat_column=np.repeat(np.asarray(columns, dtype=np.intp), sizes),
        starts=starts,
        value_offsets=starts + np.arange(len(sizes), dtype=np.intp),
        flat_values=np.concatenate(all_values) if all_values else np.empty(0),
    )


def step_functions_of_tables(
    constant: float,
    n_columns: int,
    columns: np.ndarray,
    thresholds: tuple[np.ndarray, ...],
    values: tuple[np.ndarray, ...],
    missing: np.ndarray,
    centres: np.ndarray,
) -> StepFunctions:
    """StepFunctions from its own tables (the serving artifact's): one definition of the
    flattened lookup arrays, whether the tables come from a fitted model or from a file."""
    steps = {
        int(column): (
            np.asarray(column_thresholds, dtype=np.float64),
            np.asarray(column_values, dtype=np.float64),
            float(column_missing),
        )
        for column, column_thresholds, column_values, column_missing in zip(
            columns, thresholds, values, missing, strict=True
        )
    }
    return _assemble(float(constant), int(n_columns), steps, np.asarray(centres, dtype=np.float64))


# Largest (rows x trees) walked at once in numpy; bigger batches are walked in row blocks.
FOREST_BLOCK_ELEMENTS = 1 << 20


@dataclass(frozen=True)
class ForestTables:
    """A fitted random forest / extra-trees classifier as flat node arrays, all trees
    concatenated (node ids are global: a tree's local id plus its root's offset).

    ``rate`` is every node's class-1 rate, sklearn's value[:, 1] / value.sum() (what
    DecisionTreeClassifier.predict_proba answers at a leaf). ``leaves`` repeats sklearn's
    walk: features cast to float32, ``x <= threshold`` (float64) goes left, a missing value
    follows ``missing_left``. Leaves point at themselves, so extra walk steps keep them.
    """

    roots: np.ndarray  # (n_trees,) global id of each tree's root
    feature: np.ndarray  # intp, 0 on leaves
    threshold: np.ndarray  # float64, 0 on leaves
    missing_left: np.ndarray  # bool
    left: np.ndarray  # global ids
    right: np.ndarray
    rate: np.ndarray  # float64
    depth: int

    @property
    def is_leaf(self) -> np.ndarray:
        return self.left == np.arange(len(self.left))

    def leaves(self, X: np.ndarray) -> np.ndarray:
        """Return the global node id of the leaf each row reaches in each tree."""
        X32 = np.ascontiguousarray(X, dtype=np.float32)
        n_rows, n_trees = X32.shape[0], len(self.roots)
        block = max(1, FOREST_BLOCK_ELEMENTS // max(1, n_trees))
        if n_rows > block:
            return np.concatenate(
                [self.leaves(X32[start : start + block]) for start in range(0, n_rows, block)]
            )
        node = np.repeat(self.roots[np.newaxis, :], n_rows, axis=0)
        rows = np.arange(n_rows)[:, np.newaxis]
        has_missing = bool(np.isnan(X32).any())
        for _ in range(self.depth):
            values = X32[rows, self.feature[node]]
            go_left = values <= self.threshold[node]
            if has_missing:
                go_left = np.where(np.isnan(values), self.missing_left[node], go_left)
            node = np.where(go_left, self.left[node], self.right[node])
        return node

    def probability(self, leaves: np.ndarray) -> np.ndarray:
        """Return P(class 1) per row from leaves(X): the trees' leaf rates added in tree
        order (cumsum, like the forest's ``+=``), divided by the tree count."""
        return np.cumsum(self.rate[leaves], axis=1)[:, -1] / len(self.roots)


def forest_tables(forest: Any) -> ForestTables:
    """Return the flat tables of a fitted sklearn RandomForestClassifier/ExtraTreesClassifier
    with classes [0, 1]; raise ValueError for anything else."""
    if forest.n_outputs_ != 1 or [int(c) for c in forest.classes_] != [0, 1]:
        raise ValueError("forest that is not a binary classifier with classes [0, 1]")
    roots, features, thresholds, missing, lefts, rights, rates, depths = ([] for _ in range(8))
    offset = 0
    for estimator in forest.estimators_:
        tree = estimator.tree_
        nodes = tree.__getstate__()["nodes"]
        value = tree.value[:, 0, : estimator.n_classes_]
        normalizer = value.sum(axis=1)
        normalizer[normalizer == 0.0] = 1.0
        leaf = tree.children_left < 0
        index = np.arange(tree.node_count)
        roots.append(offset)
        features.append(np.where(leaf, 0, tree.feature))
        thresholds.append(np.where(leaf, 0.0, tree.threshold))
        missing.append(nodes["missing_go_to_left"].astype(bool))
        lefts.append(offset + np.where(leaf, index, tree.children_left))
        rights.append(offset + np.where(leaf, index, tree.children_right))
        rates.append(value[:, 1] / normalizer)
        depths.append(int(tree.max_depth))
        offset += tree.node_count
    return ForestTables(
        roots=np.asarray(roots, dtype=np.intp),
        feature=np.concatenate(features).astype(np.intp),
        threshold=np.concatenate(thresholds).astype(np.float64),
        missing_left=np.concatenate(missing),
        left=np.concatenate(lefts).astype(np.intp),
        right=np.concatenate(rights).astype(np.intp),
        rate=np.concatenate(rates).astype(np.float64),
        depth=max(depths),
    )


@dataclass(frozen=True)
class LogisticTables:
    """A binary LogisticRegression's coefficients (1 x n_columns) and intercept; P(class 1)
    is sklearn's decision_function ``X @ coef.T + intercept`` through expit."""

    coef: np.ndarray
    intercept: np.ndarray

    def log_odds(self, X: np.ndarray) -> np.ndarray:
        return (X @ self.coef.T + self.intercept).reshape(-1)

    def probability(self, X: np.ndarray) -> np.ndarray:
        from scipy.special import expit

        return np.asarray(expit(self.log_odds(X)), dtype=np.float64)


def logistic_tables(model: Any) -> LogisticTables:
    """Return the tables of a fitted binary sklearn LogisticRegression (classes [0, 1])."""
    coef = np.asarray(model.coef_, dtype=np.float64)
    if coef.shape[0] != 1 or [int(c) for c in model.classes_] != [0, 1]:
        raise ValueError("logistic regression that is not binary with classes [0, 1]")
    return LogisticTables(coef, np.asarray(model.intercept_, dtype=np.float64))


# What an explainer, the serving artifact and the compiled fast path are built from: the
# tables of one fitted estimator (stroke_risk.models.families says which a family exports).
ModelTables = LogisticTables | BoostedTrees | ForestTables | StepFunctions
