"""Text fields of request bodies. PostgreSQL cannot store a NUL character, and no name or
description needs a control character, so both are refused as bad input (400) rather
than failing in the database (500)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def no_control_characters(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


PlainText = Annotated[str, AfterValidator(no_control_characters)]
