"""Explore pages: treaty status over time and the coalition network, drawn from the graph."""

from __future__ import annotations

from flask import Blueprint

__all__ = ["bp"]

bp = Blueprint("explore", __name__)
