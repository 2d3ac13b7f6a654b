"""The web dashboard and HTTP API of ``maskwatch serve`` (needs the 'web' extra: fastapi, uvicorn, python-multipart).

    from maskwatch.server import ServerSettings, bind, create_app, make_server
    app = create_app(ServerSettings(cameras=["0=door"]))
    make_server(app).run(sockets=[bind("127.0.0.1", 8000)])
"""

from .app import ServerSettings, bind, create_app, make_server
from .cameras import CameraSpec, CameraWorker, parse_camera

__all__ = ["CameraSpec", "CameraWorker", "ServerSettings", "bind", "create_app", "make_server", "parse_camera"]
