"""The web UI: server-rendered pages under ``/ui`` (Jinja2, htmx attributes, uPlot charts), its static files,
and the API docs' assets, all served by this process (nothing from another host).

``registry.api.app`` mounts what this module returns; the pages call the same services as the API.
"""

from __future__ import annotations

from collections.abc import Sequence

from litestar import Router
from litestar.datastructures import CacheControlHeader
from litestar.openapi.plugins import JsonRenderPlugin, OpenAPIRenderPlugin, SwaggerRenderPlugin, YamlRenderPlugin
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler

from registry.ui import _render
from registry.ui.account import AccountController, root
from registry.ui.admin import AdminPages
from registry.ui.compare import ComparePages
from registry.ui.evidence import EvidencePages
from registry.ui.models import ModelPages
from registry.ui.runs import RunPages

template_config = _render.template_config

SWAGGER = f"{_render.STATIC_PATH}/vendor/swagger-ui"


def route_handlers() -> list[ControllerRouterHandler]:
    """``/`` (where MLflow's links land), the pages under ``/ui`` and their static files."""
    pages = Router(
        path="/",
        route_handlers=[root, AccountController, ModelPages, RunPages, ComparePages, EvidencePages, AdminPages],
        middleware=[_render.page_headers],
        exception_handlers=_render.EXCEPTION_HANDLERS,
        include_in_schema=False,
    )
    static = create_static_files_router(
        path=_render.STATIC_PATH,
        directories=[_render.STATIC],
        # Assets change only with a release, and pages name them with ``?v=<version>``.
        cache_control=CacheControlHeader(max_age=86400, public=True),
        include_in_schema=False,
        name="ui-static",
    )
    return [pages, static]


def openapi_render_plugins() -> Sequence[OpenAPIRenderPlugin]:
    """The schema (``/schema/openapi.json``, ``.yaml``) and Swagger UI at ``/schema`` and ``/schema/swagger``,
    from the bundled swagger-ui-dist files."""
    return [
        SwaggerRenderPlugin(
            path=["/swagger", "/"],
            js_url=f"{SWAGGER}/swagger-ui-bundle.js",
            css_url=f"{SWAGGER}/swagger-ui.css",
            standalone_preset_js_url=f"{SWAGGER}/swagger-ui-standalone-preset.js",
            favicon=f"<link rel='icon' type='image/png' href='{SWAGGER}/favicon-32x32.png'>",
        ),
        JsonRenderPlugin(),
        YamlRenderPlugin(path=["/openapi.yaml", "/openapi.yml"]),
    ]


__all__ = ["openapi_render_plugins", "route_handlers", "template_config"]
