# FlowRunner image: one image for every process (web, worker, beat); docker-compose.yml picks the command.
#
# Two stages: the build stage turns the source tree into a wheel, so the runtime image holds only the
# installed packages and manage.py — not the build context's .env, .venv, .flowrunner/ data or dev keys.

FROM python:3.11-slim AS build
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
# Writable state lives in one directory: beat's schedule (its own volume in docker-compose.yml) and, for a lone
# container started without FLOWRUNNER_ENCRYPTION_KEY/SECRET_KEY, the generated development keys. Containers
# never share it: several containers must be given the same two keys (docker-compose.yml requires them).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=flowrunner.settings \
    FLOWRUNNER_DEV_KEYS_FILE=/var/lib/flowrunner/dev-keys.json \
    FLOWRUNNER_EMBEDDED_POSTGRES_DIR=/var/lib/flowrunner/postgres \
    FLOWRUNNER_ENV_FILE=/app/.env

RUN useradd --system --create-home --uid 10001 --user-group flowrunner \
    && mkdir -p /var/lib/flowrunner \
    && chown flowrunner:flowrunner /var/lib/flowrunner

COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels

WORKDIR /app
COPY --from=build /src/manage.py /app/manage.py

USER flowrunner
EXPOSE 8000
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "flowrunner.asgi:application"]
