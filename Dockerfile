# syntax=docker/dockerfile:1
# The Tendril image: the worker and every tool its jobs run, at pinned
# versions, each download checked against the checksums its publisher
# publishes (HashiCorp's are also checked against HashiCorp's signature,
# the Google Cloud CLI against Google's signed apt repository).
# Every version is a build argument declared here, once.
#
#   docker build --build-arg TENDRIL_VERSION=1.4.0 \
#     --build-context platform-templates=../infra/templates \
#     -t ghcr.io/ORG/tendril:1.4.0 .
#
# TENDRIL_VERSION is the release version, the image's tag too: the binary
# reports it to Trellis, which marks a worker whose version is not the newest
# release's as outdated. It has no default; the build stops without it.
#
# TENDRIL_CLOUD picks the image variant: `all` (every cloud's CLI, tagged
# `<version>`), or `aws`, `gcp` or `azure` (that cloud's only, tagged
# `<version>-<cloud>`: a worker serves one cloud identity, and a smaller
# image starts sooner). The AWS CLI is in every variant.
ARG TENDRIL_VERSION
ARG TENDRIL_CLOUD=all
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

# ---- downloads: the tools, the argo-cd chart, gcloud, the provider mirror --
# Everything this stage makes comes from the network, checked: /opt/tools/bin
# (terraform, helm, kubectl, infracost), /opt/tendril/charts/argo-cd.tgz,
# /opt/tendril/providers (the providers the variant's templates need) and
# /opt/google-cloud-sdk (empty in the aws and azure variants). A build
# context of the same name with that layout replaces it (the offline build
# of scripts/build-image.sh does), and nothing else changes.
FROM debian:${DEBIAN_VERSION}-slim AS downloads
ARG TARGETARCH
ARG TENDRIL_CLOUD
ARG TERRAFORM_VERSION
ARG HELM_VERSION
ARG KUBECTL_VERSION
ARG INFRACOST_VERSION
ARG GCLOUD_VERSION
ARG ARGOCD_CHART_VERSION
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
# Unpinned: Debian's archive keeps only the newest version of each package of
# a release (DEBIAN_VERSION pins the release), so a pin fails at its next update.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl gnupg unzip \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /downloads
RUN mkdir -p /opt/tools/bin /opt/tendril/charts /opt/tendril/providers /opt/google-cloud-sdk \
 # Terraform: SHA256SUMS signed by HashiCorp's key, the zip checked against it.
 && base="https://releases.hashicorp.com/terraform/${TERRAFORM_VERSION}/terraform_${TERRAFORM_VERSION}" \
 && curl -fsSLO "${base}_linux_${TARGETARCH}.zip" -fsSLO "${base}_SHA256SUMS" -fsSLO "${base}_SHA256SUMS.sig" \
 && curl -fsSL https://www.hashicorp.com/.well-known/pgp-key.txt | gpg --batch --import \
 && gpg --batch --verify "terraform_${TERRAFORM_VERSION}_SHA256SUMS.sig" "terraform_${TERRAFORM_VERSION}_SHA256SUMS" \
 && grep " terraform_${TERRAFORM_VERSION}_linux_${TARGETARCH}.zip\$" "terraform_${TERRAFORM_VERSION}_SHA256SUMS" | sha256sum -c - \
 && unzip -q "terraform_${TERRAFORM_VERSION}_linux_${TARGETARCH}.zip" terraform -d /opt/tools/bin \
 # Helm.
 && curl -fsSLO "https://get.helm.sh/helm-v${HELM_VERSION}-linux-${TARGETARCH}.tar.gz" \
 && echo "$(curl -fsSL "https://get.helm.sh/helm-v${HELM_VERSION}-linux-${TARGETARCH}.tar.gz.sha256sum" | cut -d' ' -f1)  helm-v${HELM_VERSION}-linux-${TARGETARCH}.tar.gz" | sha256sum -c - \
 && tar -xzf "helm-v${HELM_VERSION}-linux-${TARGETARCH}.tar.gz" --strip-components=1 -C /opt/tools/bin "linux-${TARGETARCH}/helm" \
 # kubectl.
 && curl -fsSLO "https://dl.k8s.io/release/v${KUBECTL_VERSION}/bin/linux/${TARGETARCH}/kubectl" \
 && echo "$(curl -fsSL "https://dl.k8s.io/release/v${KUBECTL_VERSION}/bin/linux/${TARGETARCH}/kubectl.sha256")  kubectl" | sha256sum -c - \
 && install -m 0755 kubectl /opt/tools/bin/kubectl \
 # Infracost.
 && curl -fsSLO "https://github.com/infracost/infracost/releases/download/v${INFRACOST_VERSION}/infracost-linux-${TARGETARCH}.tar.gz" \
 && curl -fsSL "https://github.com/infracost/infracost/releases/download/v${INFRACOST_VERSION}/infracost-linux-${TARGETARCH}.tar.gz.sha256" | sha256sum -c - \
 && tar -xzf "infracost-linux-${TARGETARCH}.tar.gz" \
 && install -m 0755 "infracost-linux-${TARGETARCH}" /opt/tools/bin/infracost \
 # The pinned argo-cd chart (a DEPLOY installs it from here, not from the network).
 && /opt/tools/bin/helm pull argo-cd --repo https://argoproj.github.io/argo-helm \
      --version "${ARGOCD_CHART_VERSION}" --destination /opt/tendril/charts \
 && mv "/opt/tendril/charts/argo-cd-${ARGOCD_CHART_VERSION}.tgz" /opt/tendril/charts/argo-cd.tgz
# The Google Cloud CLI (all and gcp variants) and its GKE sign-in plugin
# (kubectl and helm need it for the kubeconfig `get-credentials` writes),
# from Google's signed apt repository (apt checks each package against the
# repository's signed index), unpacked to /opt/google-cloud-sdk.
RUN case "${TENDRIL_CLOUD}" in all|gcp) ;; *) exit 0 ;; esac \
 && curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | gpg --dearmor -o /usr/share/keyrings/cloud.google.gpg \
 && echo "deb [signed-by=/usr/share/keyrings/cloud.google.gpg] https://packages.cloud.google.com/apt cloud-sdk main" \
      > /etc/apt/sources.list.d/google-cloud-sdk.list \
 && apt-get update \
 && apt-get download "google-cloud-cli=${GCLOUD_VERSION}-0" "google-cloud-cli-gke-gcloud-auth-plugin=${GCLOUD_VERSION}-0" \
 && for deb in google-cloud-cli*.deb; do dpkg-deb -x "$deb" /downloads/gcloud; done \
 && cp -a /downloads/gcloud/usr/lib/google-cloud-sdk/. /opt/google-cloud-sdk/ \
 && rm -rf /var/lib/apt/lists/*
# The providers the variant's templates need, checked by Terraform against
# the registry's signed checksums: a registry outage cannot fail a job.
COPY --from=platform-templates / /downloads/templates/
COPY templates /downloads/templates
# The template's modules are fetched first (`providers mirror` reads theirs
# too, and needs them installed).
RUN for dir in /downloads/templates/*/*/; do \
      case "${TENDRIL_CLOUD}" in all|"$(basename "$dir")") ;; *) continue ;; esac; \
      /opt/tools/bin/terraform -chdir="$dir" get -no-color \
        && /opt/tools/bin/terraform -chdir="$dir" providers mirror -platform="linux_${TARGETARCH}" /opt/tendril/providers; \
    done

# ---- the runtime's system and cloud CLIs, one stage per variant -----------
# tini is PID 1: it forwards SIGTERM to Tendril (which reaps and ends its
# tools' orphans itself) and reaps what is left when Tendril has exited.
# The AWS CLI (every variant) and the Azure CLI (all and azure) come from
# PyPI at pinned versions, in a virtualenv; the Google Cloud CLI (all and
# gcp) from the downloads stage. The Debian packages are not pinned:
# Debian's archive keeps only the newest version of each package of a
# release. Variants share the stages they have in common.
FROM debian:${DEBIAN_VERSION}-slim AS runtime-aws
ARG AWSCLI_VERSION
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
# Debian's packages unpinned: a pin fails at the archive's next update.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tini git openssh-client python3 python3-venv \
 && python3 -m venv /opt/cli \
 && /opt/cli/bin/pip install --no-cache-dir --only-binary=:all: "awscli==${AWSCLI_VERSION}" \
 && ln -s /opt/cli/bin/aws /usr/local/bin/ \
 && rm -rf /var/lib/apt/lists/* /root/.cache \
 && groupadd --gid 10001 tendril \
 && useradd --uid 10001 --gid 10001 --no-log-init --home-dir /var/lib/tendril --create-home \
      --shell /usr/sbin/nologin tendril \
 # The work dir (the outbox, the job workspaces) is the worker's alone.
 && chmod 0700 /var/lib/tendril

FROM runtime-aws AS runtime-azure
ARG AWSCLI_VERSION
ARG AZURE_CLI_VERSION
# With the AWS CLI's pin again, so that the two share what they both need.
RUN /opt/cli/bin/pip install --no-cache-dir --only-binary=:all: "awscli==${AWSCLI_VERSION}" "azure-cli==${AZURE_CLI_VERSION}" \
 && ln -s /opt/cli/bin/az /usr/local/bin/ \
 && rm -rf /root/.cache

FROM runtime-aws AS runtime-gcp

FROM runtime-azure AS runtime-all

# ---- the runtime image ------------------------------------------------------
#checkov:skip=CKV_DOCKER_7:runtime-${TENDRIL_CLOUD} is a stage of this file (runtime-aws, -gcp, -azure, -all), not an image
# The variant's stage above, which hadolint takes for an image without a tag.
# hadolint ignore=DL3006
FROM runtime-${TENDRIL_CLOUD}
COPY --from=downloads /opt/tools/bin/ /usr/local/bin/
COPY --from=downloads /opt/tendril /opt/tendril
COPY --from=downloads /opt/google-cloud-sdk /opt/google-cloud-sdk
# The templates: the platform's first, then this repository's (the worker
# template Tendril is tested with) over them.
COPY --from=platform-templates / /opt/tendril/templates/
COPY templates /opt/tendril/templates
COPY --from=build /src/target/release/tendril /usr/local/bin/tendril
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/opt/google-cloud-sdk/bin \
    TENDRIL_TEMPLATES_DIR=/opt/tendril/templates \
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
