# syntax=docker/dockerfile:1
# The Tendril image: the worker and every tool its jobs run, at pinned
# versions, each download checked against the checksums its publisher
# publishes (HashiCorp's are also checked against HashiCorp's signature).
# Every version is a build argument declared here, once.
#
#   docker build --build-arg TENDRIL_VERSION=1.4.0 \
#     --build-context platform-templates=../infra/templates \
#     -t ghcr.io/ORG/tendril:1.4.0 .
#
# TENDRIL_VERSION is the release version, the image's tag too: the binary
# reports it to Trellis, which marks a worker whose version is not the newest
# release's as outdated. It has no default; the build stops without it.
ARG TENDRIL_VERSION
ARG RUST_VERSION=1.95
ARG DEBIAN_VERSION=bookworm
ARG TERRAFORM_VERSION=1.11.4
ARG HELM_VERSION=4.1.4
ARG KUBECTL_VERSION=1.33.1
ARG INFRACOST_VERSION=0.10.41
ARG AWSCLI_VERSION=1.45.11
ARG AZURE_CLI_VERSION=2.67.0
ARG GCLOUD_VERSION=528.0.0
ARG ARGOCD_CHART_VERSION=7.7.11

# ---- the platform's templates ---------------------------------------------
# The platform's vine templates (vine/<provider>/) and ArgoCD application
# templates (argocd/*.yaml) are not in this repository. A build context of
# the same name replaces this stage with them:
# `--build-context platform-templates=../infra/templates`. Without one, the
# image holds the example vine and the example ArgoCD applications.
FROM scratch AS platform-templates
COPY examples/templates/vine /vine
COPY examples/templates/argocd /argocd

# ---- the tendril binary ----------------------------------------------------
FROM rust:${RUST_VERSION}-${DEBIAN_VERSION} AS build
ARG TENDRIL_VERSION
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src src
COPY benches benches
RUN test -n "${TENDRIL_VERSION}" \
      || { echo "give the release version: docker build --build-arg TENDRIL_VERSION=<version> ..." >&2; exit 1; } \
 && TENDRIL_VERSION="${TENDRIL_VERSION}" cargo build --release --locked --bin tendril

# ---- downloaded tools, the argo-cd chart and the provider mirror ----------
FROM debian:${DEBIAN_VERSION}-slim AS tools
ARG TERRAFORM_VERSION
ARG HELM_VERSION
ARG KUBECTL_VERSION
ARG INFRACOST_VERSION
ARG ARGOCD_CHART_VERSION
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
# Unpinned: Debian's archive keeps only the newest version of each package of
# a release (DEBIAN_VERSION pins the release), so a pin fails at its next update.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl gnupg unzip \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /downloads
RUN mkdir -p /opt/tools/bin /opt/tendril/charts /opt/tendril/providers \
 # Terraform: SHA256SUMS signed by HashiCorp's key, the zip checked against it.
 && base="https://releases.hashicorp.com/terraform/${TERRAFORM_VERSION}/terraform_${TERRAFORM_VERSION}" \
 && curl -fsSLO "${base}_linux_amd64.zip" -fsSLO "${base}_SHA256SUMS" -fsSLO "${base}_SHA256SUMS.sig" \
 && curl -fsSL https://www.hashicorp.com/.well-known/pgp-key.txt | gpg --batch --import \
 && gpg --batch --verify "terraform_${TERRAFORM_VERSION}_SHA256SUMS.sig" "terraform_${TERRAFORM_VERSION}_SHA256SUMS" \
 && grep " terraform_${TERRAFORM_VERSION}_linux_amd64.zip\$" "terraform_${TERRAFORM_VERSION}_SHA256SUMS" | sha256sum -c - \
 && unzip -q "terraform_${TERRAFORM_VERSION}_linux_amd64.zip" terraform -d /opt/tools/bin \
 # Helm.
 && curl -fsSLO "https://get.helm.sh/helm-v${HELM_VERSION}-linux-amd64.tar.gz" \
 && echo "$(curl -fsSL "https://get.helm.sh/helm-v${HELM_VERSION}-linux-amd64.tar.gz.sha256sum" | cut -d' ' -f1)  helm-v${HELM_VERSION}-linux-amd64.tar.gz" | sha256sum -c - \
 && tar -xzf "helm-v${HELM_VERSION}-linux-amd64.tar.gz" --strip-components=1 -C /opt/tools/bin linux-amd64/helm \
 # kubectl.
 && curl -fsSLO "https://dl.k8s.io/release/v${KUBECTL_VERSION}/bin/linux/amd64/kubectl" \
 && echo "$(curl -fsSL "https://dl.k8s.io/release/v${KUBECTL_VERSION}/bin/linux/amd64/kubectl.sha256")  kubectl" | sha256sum -c - \
 && install -m 0755 kubectl /opt/tools/bin/kubectl \
 # Infracost.
 && curl -fsSLO "https://github.com/infracost/infracost/releases/download/v${INFRACOST_VERSION}/infracost-linux-amd64.tar.gz" \
 && curl -fsSL "https://github.com/infracost/infracost/releases/download/v${INFRACOST_VERSION}/infracost-linux-amd64.tar.gz.sha256" | sha256sum -c - \
 && tar -xzf infracost-linux-amd64.tar.gz \
 && install -m 0755 infracost-linux-amd64 /opt/tools/bin/infracost \
 # The pinned argo-cd chart (a DEPLOY installs it from here, not from the network).
 && /opt/tools/bin/helm pull argo-cd --repo https://argoproj.github.io/argo-helm \
      --version "${ARGOCD_CHART_VERSION}" --destination /opt/tendril/charts \
 && mv "/opt/tendril/charts/argo-cd-${ARGOCD_CHART_VERSION}.tgz" /opt/tendril/charts/argo-cd.tgz
# The templates: the platform's first, then this repository's (the worker
# template Tendril is tested with) over them.
COPY --from=platform-templates / /opt/tendril/templates/
COPY templates /opt/tendril/templates
# The providers the templates need, checked by Terraform against the
# registry's signed checksums: a registry outage cannot fail a job.
RUN for dir in /opt/tendril/templates/*/*/; do \
      if grep -qs required_providers "$dir"*.tf; then \
        /opt/tools/bin/terraform -chdir="$dir" providers mirror /opt/tendril/providers; \
      fi; \
    done

# ---- the runtime image ------------------------------------------------------
FROM debian:${DEBIAN_VERSION}-slim
ARG AWSCLI_VERSION
ARG AZURE_CLI_VERSION
ARG GCLOUD_VERSION
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
# tini is PID 1: it forwards SIGTERM to Tendril and reaps tool grandchildren.
# The AWS and Azure CLIs come from PyPI at pinned versions, in a virtualenv;
# the Google Cloud CLI from Google's signed apt repository, pinned. The Debian
# packages are not: Debian's archive keeps only the newest version of each
# package of a release, so a pin fails at its next update.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tini git openssh-client python3 python3-venv curl gnupg \
 && python3 -m venv /opt/cli \
 && /opt/cli/bin/pip install --no-cache-dir --only-binary=:all: "awscli==${AWSCLI_VERSION}" "azure-cli==${AZURE_CLI_VERSION}" \
 && ln -s /opt/cli/bin/aws /opt/cli/bin/az /usr/local/bin/ \
 && curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | gpg --dearmor -o /usr/share/keyrings/cloud.google.gpg \
 && echo "deb [signed-by=/usr/share/keyrings/cloud.google.gpg] https://packages.cloud.google.com/apt cloud-sdk main" \
      > /etc/apt/sources.list.d/google-cloud-sdk.list \
 && apt-get update \
 && apt-get install -y --no-install-recommends "google-cloud-cli=${GCLOUD_VERSION}-0" \
 && apt-get purge -y curl gnupg && apt-get autoremove -y \
 && rm -rf /var/lib/apt/lists/* /root/.cache \
 && useradd --system --uid 10001 --home-dir /var/lib/tendril --create-home --shell /usr/sbin/nologin tendril
COPY --from=tools /opt/tools/bin/ /usr/local/bin/
COPY --from=tools /opt/tendril /opt/tendril
COPY --from=build /src/target/release/tendril /usr/local/bin/tendril
ENV TENDRIL_TEMPLATES_DIR=/opt/tendril/templates \
    TENDRIL_ARGOCD_CHART=/opt/tendril/charts/argo-cd.tgz \
    TENDRIL_TERRAFORM_PROVIDER_MIRROR=/opt/tendril/providers \
    TENDRIL_WORK_DIR=/var/lib/tendril \
    TENDRIL_HEALTH_ADDR=127.0.0.1:9460
# `tendril health` asks the worker's own health endpoint (loopback only):
# unhealthy when Trellis has not answered for two heartbeat intervals or the
# work dir cannot be written.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["tendril", "health"]
USER 10001
WORKDIR /var/lib/tendril
ENTRYPOINT ["/usr/bin/tini", "--", "tendril"]
CMD ["start"]
