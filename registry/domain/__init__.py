"""ORM models, one module per aggregate. Importing this package registers every table on ``Base.metadata``."""

from registry.domain import artifacts, auth, events, experiments, gates, models, runs
from registry.domain.base import Base

__all__ = ["Base", "artifacts", "auth", "events", "experiments", "gates", "models", "runs"]
