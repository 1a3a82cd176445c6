"""Portico: self-hosted API management with an Azure-compatible control plane and fast, safe DR."""

__version__ = "0.1.0"
