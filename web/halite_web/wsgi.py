"""WSGI entry point: gunicorn halite_web.wsgi:app"""
from . import create_app

app = create_app()
