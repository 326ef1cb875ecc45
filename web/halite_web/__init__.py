"""halite-web: a small new & used car market running on halite's HA PostgreSQL."""
from __future__ import annotations

import atexit
import logging
from typing import Any, Mapping

from flask import Flask

from .config import load_config
from .db import Database

__version__ = "0.1.0"


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Application factory. `config` overrides HALITE_WEB_* environment variables
    (keys: WRITE_DSN, READ_DSN, PATRONI_URLS, SECRET_KEY, POOL_*, RYW_SECONDS, ...)."""
    app = Flask(__name__)
    app.config.update(load_config(config))
    if not app.debug and not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # psycopg_pool is chatty at INFO (one line per connection handed out)
    logging.getLogger("psycopg.pool").setLevel(logging.WARNING)

    db = Database(app.config)
    app.extensions["halite_db"] = db
    atexit.register(db.close)

    from . import views, errors, templating
    templating.init_app(app)
    errors.init_app(app)
    app.register_blueprint(views.bp)
    return app
