"""``python -m monai_ils.report structure --executor ray``: batches of reports structured by Ray actors.

Each actor builds its own structurer once; with the ``http`` backend actor ``i`` talks to endpoint
``i % len(endpoints)`` (several ``vllm serve`` replicas, round-robin), each with ``--concurrency`` requests in
flight, so ``actors x concurrency`` requests are outstanding in all. The driver hands the next batch to whichever
actor is free and writes the results in input order (the output file is the same as with the local executor,
and resumes the same way). An actor that dies is replaced and its batch tried again once; a second death
turns the batch into error records (``--retry-errors`` re-runs them later).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

from monai_ils.distributed import RETRY, ordered_actor_map, ray_session

logger = logging.getLogger(__name__)

__all__ = ["structure_chunks_on_ray", "split_endpoints"]


def split_endpoints(base_url: str) -> list[str]:
    """``--base-url`` may list several OpenAI-compatible servers separated by commas."""
    urls = [u.strip() for u in str(base_url).split(",") if u.strip()]
    if not urls:
        raise ValueError("--base-url: no server URL given")
    return urls


class _Structurer:
    def __init__(self, backend: str, options: dict, fallback: bool = True, sections: str = "fallback"):
        from monai_ils.report.api import build_structurer

        self.structurer = build_structurer(backend, **options)
        self.fallback, self.sections = fallback, sections

    def ready(self) -> bool:
        return True

    def run(self, chunk) -> list[dict]:
        from monai_ils.report.cli import _structure_batch

        return _structure_batch(chunk, self.structurer, self.fallback, self.sections)


def structure_chunks_on_ray(chunks: Iterable[list], backend: str, options_per_actor: list[dict], address=None,
                            num_cpus_per_actor: float = 1, fallback: bool = True,
                            sections: str = "fallback") -> Iterator[list[dict]]:
    """Yield the records of each chunk, in order, structured by ``len(options_per_actor)`` actors
    (``fallback`` and ``sections`` as in ``cli.structure_records``)."""
    with ray_session(address) as ray:
        actor_class = ray.remote(_Structurer).options(num_cpus=num_cpus_per_actor, max_restarts=0, max_task_retries=0)
        actors = [actor_class.remote(backend, options, fallback, sections) for options in options_per_actor]
        tries: dict = {}

        def on_death(item, err):
            index, chunk = item
            tries[index] = tries.get(index, 0) + 1
            logger.warning("structuring actor died (batch %d, attempt %d): %s", index, tries[index], type(err).__name__)
            if tries[index] < 2:
                return RETRY
            return [{"id": rid, "error": f"the Ray worker died twice on this batch ({type(err).__name__})",
                     "error_type": "WorkerDied"} for rid, _ in chunk]

        try:
            ray.get([a.ready.remote() for a in actors])
            def restart(slot):  # the replacement talks to the same endpoint
                return actor_class.remote(backend, options_per_actor[slot], fallback, sections)

            for _, records in ordered_actor_map(ray, actors, restart, enumerate(chunks), lambda a, item: a.run.remote(item[1]),
                                                on_death):
                yield records
        finally:
            for actor in actors:
                ray.kill(actor)
