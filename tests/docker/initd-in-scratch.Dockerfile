# The Docker tier's no-libc case: a FROM scratch image holding Debian's
# busybox-static and initd copied out of the initd image, nothing else (no
# libc, no loader), serving a directory with busybox httpd under initd,
# healthy through `initd check` with an HTTP probe. Built by
# tests/docker/e2e.sh with its build arguments.
ARG INITD_IMAGE=initd-example/initd:latest
ARG DEBIAN_IMAGE=python:3.12-slim
FROM ${INITD_IMAGE} AS initd

# Only to fetch the package: its one file is what the image takes.
FROM ${DEBIAN_IMAGE} AS busybox
RUN apt-get update \
    && apt-get install -y --no-install-recommends busybox-static \
    && rm -rf /var/lib/apt/lists/*

FROM scratch
COPY --from=busybox /bin/busybox /bin/busybox
COPY --from=initd /initd /usr/local/bin/initd
# No shell yet: the exec form, busybox making its own applet links.
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN ["/bin/sh", "-c", "mkdir -p /www /tmp && echo 'served under initd in scratch' >/www/index.html"]
# No /etc/passwd to drop to a user from: root, allowed explicitly.
ENV PATH=/usr/local/bin:/bin \
    INITD_ALLOW_ROOT=true \
    INITD_HEALTH=http://127.0.0.1:8000/
HEALTHCHECK --interval=2s --timeout=5s --retries=30 CMD ["initd", "check"]
ENTRYPOINT ["initd"]
CMD ["httpd", "-f", "-p", "127.0.0.1:8000", "-h", "/www"]
