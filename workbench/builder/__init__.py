"""Lowering a Graph to a Network: shapes fixed by the profile, layers bound to tactics."""
from workbench.builder.build import build_network
from workbench.builder.config import PRECISIONS, BuilderConfig, Profile
from workbench.builder.network import IOSpec, Network

__all__ = ["build_network", "BuilderConfig", "Profile", "PRECISIONS", "IOSpec", "Network"]
