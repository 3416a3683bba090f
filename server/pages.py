"""Entity, ontology and graph pages, the VoID description and the dumps."""

from __future__ import annotations

from flask import Blueprint

__all__ = ["bp"]

bp = Blueprint("pages", __name__)
