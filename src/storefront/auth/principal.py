"""The authenticated caller, as every layer above the web edge sees it.

Pure data: the HTTP edge (identity's bearer-token dependency) builds one per request, the
command-line tools and the seed build their own, and services take it without knowing how
the caller proved who they are.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: uuid.UUID
    is_admin: bool
    auth_time: datetime  # when the caller last proved their credentials (recent-auth checks)
    session_id: str | None  # the sign-in session behind the access token, if any
