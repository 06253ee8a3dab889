"""Imports every domain's tables so that Base.metadata is complete (Alembic, tests)."""

from watergrid.auth import models as auth_models  # noqa: F401
from watergrid.db import Base
from watergrid.geo import models as geo_models  # noqa: F401
from watergrid.notify import models as notify_models  # noqa: F401
from watergrid.org import models as org_models  # noqa: F401
from watergrid.workorders import models as workorder_models  # noqa: F401

metadata = Base.metadata
