"""The arena page (``ptwiki-llm serve``): one question in, every arm's answer side by side, with evidence.

A small FastAPI app around one :class:`~ptwiki_llm.rag.answering.Answerer` (the library function
``ask`` and ``compare`` call): the models, the retriever and the embedder are loaded once, before the
first question, and kept. The page is plain HTML and JavaScript served by the app itself (no CDN: the
machines it runs on may reach nothing outside). It binds to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from typing import Any

from pydantic import BaseModel, Field

from ptwiki_llm.config import Config

PAGE = "page.html"


class AskRequest(BaseModel):
    """The body of ``POST /api/ask``. At module level: FastAPI resolves the (string) annotation of the route's
    parameter in this module's namespace, and a class local to ``create_app`` would be taken for a query field."""

    question: str = Field(min_length=1, max_length=2000)
    k: int | None = Field(None, ge=1, le=20)
    hybrid: bool = False


def create_app(answerer: Any, arms: list[Any], notes: list[str]) -> Any:
    """The FastAPI app: ``/`` the page, ``/api/info`` what answers, ``POST /api/ask`` one comparison."""
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import HTMLResponse

    from ptwiki_llm.rag.answering import model_label

    page = resources.files(__package__).joinpath(PAGE).read_text(encoding="utf-8")
    config = answerer.config
    app = FastAPI(title="ptwiki-llm arena", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        from ptwiki_llm.rag.pointer import current_collection

        rag = any(a.rag for a in arms)
        return {
            "arms": [{"arm": a.name, "model": model_label(a.model, answerer.versions), "rag": a.rag} for a in arms],
            "versions": {"challenger": answerer.versions.challenger, "champion": answerer.versions.champion},
            "registered_model": config.registry.model_name, "tracking_uri": config.mlflow_tracking_uri,
            "collection": current_collection(config) if rag else None, "k": config.rag.retrieval.k,
            "not_found_below": config.rag.answer.not_found_below, "notes": notes,
        }

    @app.post("/api/ask")
    def ask(request: AskRequest) -> dict[str, Any]:
        try:
            comparison = answerer.answer(request.question, arms, k=request.k, hybrid=request.hybrid, notes=notes)
        except ValueError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from exc
        return comparison.to_dict()

    return app


def prepare(config: Config, log: Callable[[str], Any] = print) -> tuple[Any, Any]:
    """The Answerer with every configured arm loaded, and the app around it."""
    from ptwiki_llm.rag.answering import Answerer

    answerer = Answerer(config)
    arms, notes = answerer.compare_arms()
    log(f"loading {', '.join(dict.fromkeys(a.model for a in arms))} and the retriever (once) ...")
    answerer.load(arms)
    return answerer, create_app(answerer, arms, notes)


def serve(config: Config, host: str = "127.0.0.1", port: int = 8000, log: Callable[[str], Any] = print) -> None:
    import uvicorn

    answerer, app = prepare(config, log)
    log(f"arena on http://{host}:{port}/ (Ctrl-C stops it)")
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        answerer.close()
