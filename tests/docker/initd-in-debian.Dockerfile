# The Docker tier's glibc case: initd copied out of the initd image into a
# Debian-based image (the Python base; any would do), as the README shows,
# serving a directory with Python's http.server, healthy through `initd
# check` with an HTTP probe. The server runs as nobody, as an app would run
# as its own user. Built by tests/docker/e2e.sh with its build arguments.
ARG INITD_IMAGE=initd-example/initd:latest
ARG DEBIAN_IMAGE=python:3.12-slim
FROM ${INITD_IMAGE} AS initd

FROM ${DEBIAN_IMAGE}
COPY --from=initd /initd /usr/local/bin/initd
RUN mkdir /www && echo 'served under initd in Debian' >/www/index.html
ENV INITD_USER=nobody \
    INITD_HEALTH=http://127.0.0.1:8000/
HEALTHCHECK --interval=2s --timeout=5s --retries=30 CMD ["initd", "check"]
ENTRYPOINT ["initd"]
CMD ["python3", "-m", "http.server", "8000", "--bind", "127.0.0.1", "--directory", "/www"]
