"""``multispot server``: the HTTP API over the same Python API (``multispot.api``), for a team.

``app.create_app(store_url)`` builds the FastAPI application; ``auth`` turns a bearer token into
a user; ``errors`` maps the project's error tree onto JSON answers; ``staging`` unpacks the code a
client uploads. FastAPI and uvicorn are imported only here (``pip install multispot[server]``).
"""
