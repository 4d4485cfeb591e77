"""Terrain's HTTP API: FastAPI routers, schemas, domain services and the database layer."""
