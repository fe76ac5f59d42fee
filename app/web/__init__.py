"""The HTTP door: the only package that imports FastAPI, Starlette, uvicorn or
python-multipart (tests/test_architecture.py). The app factory and lifespan (main.py), the
server protocol (server.py), dependencies (deps.py), schemas, the HTTP error table (errors.py),
middleware, auth, multipart and body budgets (upload.py) and the routes."""
