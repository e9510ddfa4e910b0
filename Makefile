# The daily commands for the example stack (docker-compose.yml: the app under
# `initd dev`, the Celery worker, Redis, PostgreSQL, nginx). `make help`
# lists them.
#
#   make up                                   build what changed (the initd image first), start, detached
#   make up COMPOSE_FILE=docker-compose.ci.yml    the CI/production-like stack, from now on
#   make shell                                a shell in the app container, as the app user
#   make down
#
# COMPOSE_FILE given on the command line is written to .env (colon-separated
# files, as compose reads it), and every later `make` and `docker compose`
# in this directory uses it; `make up COMPOSE_FILE=docker-compose.yml` goes
# back. Works with the compose plugin (`docker compose`, v2) and with
# docker-compose v1, whichever is installed.

SHELL := /bin/bash
.DEFAULT_GOAL := help
.PHONY: help up down logs ps shell djshell test e2e image wheel

COMPOSE ?= $(shell if docker compose version >/dev/null 2>&1; then echo 'docker compose'; \
	elif command -v docker-compose >/dev/null 2>&1; then echo docker-compose; fi)
# The image the app and nginx images copy initd from (images/initd), built
# from this checkout by `make up`; the compose files default to the same tag.
INITD_IMAGE ?= initd-example/initd:latest
# Its Rust image (a local stand-in where nothing can be pulled).
RUST_IMAGE ?= rust:1
# Where `make wheel` puts the wheel, and the virtualenv with its tools.
WHEEL_DIR ?= target/wheels
WHEEL_TOOLS ?= target/wheel-tools
# The service `shell` and `djshell` open, and `logs` follows (empty: all).
APP_SERVICE ?= app
SERVICE ?=

# The Dockerfiles use BuildKit's cache mounts: Docker 20.10-22 and
# docker-compose v1 build with BuildKit only when asked.
export DOCKER_BUILDKIT := 1
export COMPOSE_DOCKER_CLI_BUILD := 1

ifeq ($(origin COMPOSE_FILE),command line)
export COMPOSE_FILE
endif

define need_compose
	@if [ -z "$(COMPOSE)" ]; then \
		echo "make: neither 'docker compose' (v2) nor docker-compose (v1) is installed; install one of them" >&2; exit 1; fi
endef

# docker-compose v1 builds through the first `docker` in PATH, which must
# build with BuildKit: one with the buildx plugin, or a 20.10-22 CLI (BuildKit
# built in). A newer CLI without buildx can't; then the directory of one that
# can goes first in PATH, for the build only.
define buildkit_path
	for d in $$(type -ap docker); do \
		if "$$d" buildx version >/dev/null 2>&1; then dirname "$$d"; break; fi; \
		case $$("$$d" version --format '{{.Client.Version}}' 2>/dev/null) in \
		1[89].* | 2[012].*) dirname "$$d"; break ;; esac; \
	done
endef

help: ## this list
	@f=$${COMPOSE_FILE:-$$(sed -n 's/^COMPOSE_FILE=//p' .env 2>/dev/null | tail -n1)}; \
		echo "make TARGET, in the repository root (compose files: $${f:-docker-compose.yml})"
	@awk 'BEGIN { FS = ":.*## " } /^[a-z0-9-]+:.*## / { printf "  make %-8s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)
	@echo "  (compose: $(or $(COMPOSE),none found); COMPOSE_FILE=a.yml:b.yml on 'make up' is kept in .env)"

up: ## build what changed, then start every service detached (idempotent)
	$(need_compose)
ifeq ($(origin COMPOSE_FILE),command line)
	@for f in $(subst :, ,$(COMPOSE_FILE)); do \
		[ -f "$$f" ] || { echo "make: COMPOSE_FILE: no file '$$f' here (give compose files separated by ':')" >&2; exit 1; }; done
	@touch .env && { grep -v '^COMPOSE_FILE=' .env || true; echo 'COMPOSE_FILE=$(COMPOSE_FILE)'; } >.env.tmp && mv .env.tmp .env
	@echo "make: COMPOSE_FILE=$(COMPOSE_FILE) is kept in .env"
endif
	@echo "make: building $(INITD_IMAGE) (images/initd: compiles src/, minutes the first time)"
	@bk=$$($(buildkit_path)); PATH="$${bk:+$$bk:}$$PATH" docker build -q -f images/initd/Dockerfile \
		--build-arg RUST_IMAGE=$(RUST_IMAGE) -t $(INITD_IMAGE) . >/dev/null
	@bk=$$($(buildkit_path)); PATH="$${bk:+$$bk:}$$PATH" INITD_IMAGE=$(INITD_IMAGE) $(COMPOSE) up -d --build --remove-orphans

down: ## stop and remove the containers (the volumes stay: the database too)
	$(need_compose)
	$(COMPOSE) down --remove-orphans

logs: ## follow the logs (SERVICE=worker for one service)
	$(need_compose)
	$(COMPOSE) logs -f --tail=100 $(SERVICE)

ps: ## the containers and their health
	$(need_compose)
	$(COMPOSE) ps

shell: ## a shell in the app container as the app user, with the secrets (initd exec)
	$(need_compose)
	@if [ -t 0 ]; then t=; else t=-T; fi; $(COMPOSE) exec $$t $(APP_SERVICE) initd exec bash

djshell: ## Django's shell (manage.py shell) in the app container, as the app user
	$(need_compose)
	@if [ -t 0 ]; then t=; else t=-T; fi; $(COMPOSE) exec $$t $(APP_SERVICE) initd exec python manage.py shell

test: ## the tests, as in the README (bash tests/run.sh; no Docker needed)
	bash tests/run.sh

image: ## the FROM scratch image holding /initd alone (INITD_IMAGE, default initd-example/initd:latest)
	@bk=$$($(buildkit_path)); PATH="$${bk:+$$bk:}$$PATH" docker build -f images/initd/Dockerfile \
		--build-arg RUST_IMAGE=$(RUST_IMAGE) -t $(INITD_IMAGE) .

# maturin builds the wheel with pyproject.toml's settings (bin bindings,
# manylinux2014); `wheel tags` then adds the musllinux tag, which maturin
# won't combine with a manylinux one for a gnu-target build. The binary is
# static: both promises hold. The tools' versions: maturin as pyproject.toml
# requires it, wheel 0.40+ (the first with `wheel tags`).
wheel: ## the wheel for pip install initd-pid1 (target/wheels/), tagged for glibc and musl
	@set -euo pipefail; \
	if ! [ -x $(WHEEL_TOOLS)/bin/maturin ] || ! $(WHEEL_TOOLS)/bin/python -c 'import wheel' 2>/dev/null; then \
		req=$$(sed -n 's/^requires = \["\(maturin[^"]*\)"\]$$/\1/p' pyproject.toml); \
		[ -n "$$req" ] || { echo "make: no maturin requirement in pyproject.toml's build-system" >&2; exit 1; }; \
		python3 -m venv $(WHEEL_TOOLS) && $(WHEEL_TOOLS)/bin/pip install -q "$$req" 'wheel>=0.40'; \
	fi; \
	rm -f $(WHEEL_DIR)/initd_pid1-*.whl; \
	$(WHEEL_TOOLS)/bin/maturin build --release --out $(WHEEL_DIR); \
	$(WHEEL_TOOLS)/bin/python -m wheel tags --remove --platform-tag +musllinux_1_1_x86_64 $(WHEEL_DIR)/initd_pid1-*.whl

e2e: ## the Docker tier (bash tests/docker/e2e.sh): builds the images, runs both compose files
	bash tests/docker/e2e.sh
