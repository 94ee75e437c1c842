"""Every raw request of ``tests/corpus/requests/`` against the admin listener's own HTTP server.

The corpus was written for the main listener (its ``.expect`` files speak of the upstream), so here
the check is what any listener owes bad input: whatever arrives, every byte the server sends parses
as HTTP/1.1 responses, every error carries the JSON document with an ``error_id``, nothing is
raised on the event loop, and the server goes on answering afterwards.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.admin.admin_apps import UUID4, admin_app, make_config
from tests.corpus.format import Case, load_cases
from tests.support.admin_client import serve_admin
from tests.support.responses import IncompleteResponse, parse_responses

QUIET_S = 1.0  # a connection the server keeps open is read until it has been quiet this long
BATCH = 64


async def replay(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    chunks: list[bytes] = []
    try:
        writer.write(payload)
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), QUIET_S)
            if not chunk:
                break
            chunks.append(chunk)
    except (TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()
    return b"".join(chunks)


def problems(case: Case, data: bytes) -> list[str]:
    try:
        answers = parse_responses(data, eof=True, head_for=[True] * 64 if case.payload.startswith(b"HEAD ") else None)
    except IncompleteResponse as exc:
        return [f"{case.name}: unparseable answer ({exc}): {data[:200]!r}"]
    found = []
    for answer in answers:
        if answer.status < 400 or not answer.body:
            continue
        try:
            doc = json.loads(answer.body)
        except ValueError:
            found.append(f"{case.name}: {answer.status} without the JSON error: {answer.body[:200]!r}")
            continue
        if not UUID4.fullmatch(str(doc.get("error_id"))) or not doc.get("error_code"):
            found.append(f"{case.name}: {answer.status} error without error_id/error_code: {doc}")
    return found


async def test_every_corpus_request_gets_http_answers_and_json_errors() -> None:
    loop = asyncio.get_running_loop()
    loop_errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: loop_errors.append(context))
    client = await serve_admin(admin_app(make_config(logging={"access_log": False})))
    try:
        cases = load_cases()
        found: list[str] = []
        for start in range(0, len(cases), BATCH):
            batch = cases[start : start + BATCH]
            answers = await asyncio.gather(*(replay(client.port, case.payload) for case in batch))
            for case, data in zip(batch, answers, strict=True):
                found += problems(case, data)
        assert not found, "\n".join(found[:20])
        async with client.get("/health/live") as response:
            assert response.status == 200
    finally:
        await client.close()
        loop.set_exception_handler(None)
    assert not loop_errors, loop_errors[:3]
