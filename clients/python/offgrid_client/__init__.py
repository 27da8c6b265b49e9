"""Core's client for an Offgrid-Net node.

    from offgrid_client import OffgridClient
    client = OffgridClient("http://127.0.0.1:7700", hmac_key="...", audience="12D3KooW...")
    result = client.run({"kind": "llm_call", "payload": {"prompt": "Test"}})

See client.py for the modes (OFFGRID_MODE), retries and errors.
"""

from .client import (
    MODES,
    RETRY_DELAYS,
    OffgridAuthError,
    OffgridBadRequest,
    OffgridClient,
    OffgridConflict,
    OffgridDisabled,
    OffgridError,
    OffgridJobFailed,
    OffgridPaymentRequired,
    OffgridTimeout,
    OffgridUnavailable,
    canonical,
    estimate_size,
    from_offgrid,
    to_offgrid,
)

__all__ = [
    "MODES",
    "RETRY_DELAYS",
    "OffgridAuthError",
    "OffgridBadRequest",
    "OffgridClient",
    "OffgridConflict",
    "OffgridDisabled",
    "OffgridError",
    "OffgridJobFailed",
    "OffgridPaymentRequired",
    "OffgridTimeout",
    "OffgridUnavailable",
    "canonical",
    "estimate_size",
    "from_offgrid",
    "to_offgrid",
]
