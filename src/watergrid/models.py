"""Imports every domain's tables so that Base.metadata is complete (Alembic, tests)."""

from watergrid.auth import models as auth_models  # noqa: F401
from watergrid.db import Base
from watergrid.flood import models as flood_models  # noqa: F401
from watergrid.flood import warning_models  # noqa: F401
from watergrid.geo import models as geo_models  # noqa: F401
from watergrid.inspections import models as inspection_models  # noqa: F401
from watergrid.kpi import models as kpi_models  # noqa: F401
from watergrid.notify import models as notify_models  # noqa: F401
from watergrid.org import models as org_models  # noqa: F401
from watergrid.permits import models as permit_models  # noqa: F401
from watergrid.timers import models as timers_models  # noqa: F401
from watergrid.workorders import models as workorder_models  # noqa: F401

metadata = Base.metadata
