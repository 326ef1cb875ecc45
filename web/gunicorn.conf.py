# gunicorn -c web/gunicorn.conf.py --chdir web halite_web.wsgi:app
import os

bind = os.environ.get("HALITE_WEB_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("HALITE_WEB_WORKERS", "2"))
worker_class = "gthread"
threads = int(os.environ.get("HALITE_WEB_THREADS", "4"))
timeout = 30
graceful_timeout = 10
keepalive = 5
accesslog = "-"
errorlog = "-"
# each worker lazily opens its own pools (no connections before fork)
preload_app = False
