"""The Scheduler: urgency tiers, due times, waves and concurrency."""

from actors.scheduling.scheduler import Scheduler
from actors.scheduling._schedule import STREAM_CONCURRENCY

__all__ = ["STREAM_CONCURRENCY", "Scheduler"]
