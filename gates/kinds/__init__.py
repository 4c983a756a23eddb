"""One evaluator per gate kind: turn a gate and the input tables into per-slice evidence
(bounds, the two one-sided p-values, counts, plan). :mod:`gates.engine` turns evidence into
PASS/FAIL/INCONCLUSIVE after the fail-side multiplicity adjustment."""
