"""The Django project the API benchmark serves with gunicorn (see ../README.md)."""
