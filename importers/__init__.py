"""CSV billing-export importers: an explicit registry and header-based detection (code-anchors §11.1, §11.10).

Order matters for detection: the most specific formats come first and the generic template,
whose columns are the loosest, last.
"""

from __future__ import annotations

from importers.aws_cur import AwsCurImporter
from importers.azure_cost import AzureCostImporter
from importers.base import FileFormatError, Importer
from importers.fireworks import FireworksImporter
from importers.focus import FocusImporter
from importers.gcp_billing import GcpBillingImporter
from importers.generic import GenericImporter

REGISTRY: dict[str, type[Importer]] = {
    cls.name: cls
    for cls in (
        FocusImporter,
        GcpBillingImporter,
        AwsCurImporter,
        AzureCostImporter,
        FireworksImporter,
        GenericImporter,
    )
}


def get_importer(name: str) -> Importer:
    """The importer registered under ``name``.

    Raises:
        FileFormatError: naming the known importers when ``name`` is not one of them.
    """
    try:
        return REGISTRY[name]()
    except KeyError:
        raise FileFormatError(f"unknown importer {name!r}; known: {', '.join(REGISTRY)}") from None


def detect(header: list[str]) -> Importer:
    """The first registered importer whose required columns are all in ``header``.

    Raises:
        FileFormatError: listing, for the closest formats, the required columns the header lacks.
    """
    gaps: list[tuple[int, str, list[str]]] = []
    for name, cls in REGISTRY.items():
        importer = cls()
        missing = importer.missing(header)
        if not missing:
            return importer
        gaps.append((len(missing), name, missing))
    gaps.sort()
    closest = "; ".join(f"{name} lacks {', '.join(missing)}" for _, name, missing in gaps[:3])
    raise FileFormatError(f"unrecognised export format (use --importer to choose one): {closest}")


__all__ = ["REGISTRY", "detect", "get_importer"]
