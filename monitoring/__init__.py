"""Production monitoring: drift of a promoted model version's inputs and predictions, from profiles.

Production rows are reduced on arrival to mergeable per-column profiles (:mod:`monitoring.profile`) in
hourly buckets per model version; a check merges the buckets of its window and compares them with the
version's baseline profile, column by column, with Evidently 0.7's methods and defaults computed from
the profiles alone (:mod:`monitoring.drift`), under a monitor spec (:mod:`monitoring.spec`). Those three
modules are pure (numpy, pyarrow, scipy, datasketches); the rest stores baselines, buckets, specs and
checks, and raises ``drift.detected`` / ``drift.resolved`` when an alias changes state.
"""
