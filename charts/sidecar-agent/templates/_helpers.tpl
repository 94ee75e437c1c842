{{/* Names and labels ---------------------------------------------------------------------- */}}

{{- define "sidecar-agent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sidecar-agent.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "sidecar-agent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sidecar-agent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sidecar-agent.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "sidecar-agent.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "sidecar-agent.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sidecar-agent.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Both images are required: no default would pull (the agent's image is not published, the app
is yours), and a placeholder only shows up later as ImagePullBackOff. */}}
{{- define "sidecar-agent.agentImage" -}}
{{- $repository := required (printf "agent.image.repository is required: the agent image is not published. Build it from the repository's Dockerfile and push it to a registry your nodes pull from (docker build -t REGISTRY/sidecar-agent:%s . && docker push REGISTRY/sidecar-agent:%s; with podman: podman build --format docker ...), then set --set agent.image.repository=REGISTRY/sidecar-agent (the tag defaults to the chart's appVersion, %s)" .Chart.AppVersion .Chart.AppVersion .Chart.AppVersion) .Values.agent.image.repository -}}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.agent.image.tag) -}}
{{- end -}}

{{- define "sidecar-agent.appImage" -}}
{{- $repository := required "app.image.repository is required: your API's image (--set app.image.repository=REGISTRY/your-api --set app.image.tag=VERSION)" .Values.app.image.repository -}}
{{- printf "%s:%s" $repository .Values.app.image.tag -}}
{{- end -}}

{{/* Cluster features ------------------------------------------------------------------------
Read from .Capabilities.KubeVersion: the cluster's version under `helm install/upgrade`, and
`--kube-version` (else Helm's built-in default) under `helm template`. */}}

{{/* "true" when the agent runs as a native sidecar (an init container with restartPolicy:
Always; SidecarContainers is on by default since Kubernetes 1.29). nativeSidecar: auto picks it
where the cluster has it; true insists and fails the render on an older cluster. */}}
{{- define "sidecar-agent.isNativeSidecar" -}}
{{- $hasNative := semverCompare ">=1.29.0-0" .Capabilities.KubeVersion.Version -}}
{{- if eq (toString .Values.nativeSidecar) "auto" -}}
{{- if $hasNative -}}true{{- end -}}
{{- else if .Values.nativeSidecar -}}
{{- if not $hasNative -}}
{{- fail (printf "nativeSidecar: true needs Kubernetes 1.29 or newer (native sidecar containers), this cluster is %s: set nativeSidecar: auto (a native sidecar where the cluster has them, a regular container elsewhere) or false" .Capabilities.KubeVersion.Version) -}}
{{- end -}}
true
{{- end -}}
{{- end -}}

{{/* "true" when the kubelet runs a `sleep` lifecycle action itself (PodLifecycleSleepAction, on
by default since Kubernetes 1.30); older clusters get an exec of the app image's sleep. */}}
{{- define "sidecar-agent.hasSleepAction" -}}
{{- if semverCompare ">=1.30.0-0" .Capabilities.KubeVersion.Version -}}true{{- end -}}
{{- end -}}

{{/* The agent's configuration -------------------------------------------------------------
The effective agent.toml as JSON: .Values.agent.config plus the listeners the chart owns
(server.listen, admin.listen from agent.ports) and, unless set, upstream.url from app.port. */}}

{{- define "sidecar-agent.agentConfigJson" -}}
{{- $cfg := deepCopy (.Values.agent.config | default dict) -}}
{{- range $section := list "server" "admin" "upstream" "health" -}}
{{- if not (hasKey $cfg $section) -}}
{{- $_ := set $cfg $section dict -}}
{{- end -}}
{{- end -}}
{{- if hasKey $cfg.server "listen" -}}
{{- fail "agent.config.server.listen is set by the chart: set agent.ports.http instead" -}}
{{- end -}}
{{- if hasKey $cfg.admin "listen" -}}
{{- fail "agent.config.admin.listen is set by the chart: set agent.ports.admin instead" -}}
{{- end -}}
{{- $_ := set $cfg.server "listen" (printf "0.0.0.0:%d" (int .Values.agent.ports.http)) -}}
{{- $tls := dig "tls" dict $cfg.server -}}
{{- range $key := list "cert_file" "key_file" "client_ca_file" "client_auth" -}}
{{- if hasKey $tls $key -}}
{{- fail (printf "agent.config.server.tls.%s is set by the chart: set tls.enabled, tls.secretName (and tls.clientCaSecretName, tls.clientAuth) instead" $key) -}}
{{- end -}}
{{- end -}}
{{- if eq .Values.tls.clientAuth "require" -}}
{{- fail "tls.clientAuth: require would fail the kubelet's probes and helm test: they present no client certificate, and the handshake fails before a path is read. Use optional (a client without a certificate is served; with agent.config.proxy.forward_client_cert the app sees who presented one)" -}}
{{- end -}}
{{- if and .Values.tls.clientCaSecretName (not .Values.tls.enabled) -}}
{{- fail "tls.clientCaSecretName needs tls.enabled (and tls.secretName): client certificates are only asked for over TLS" -}}
{{- end -}}
{{- if .Values.tls.enabled -}}
{{- $dirs := include "sidecar-agent.tlsDirs" . | fromJson -}}
{{- $tls = deepCopy $tls -}}
{{- $_ := set $tls "cert_file" (printf "%s/tls.crt" $dirs.cert) -}}
{{- $_ := set $tls "key_file" (printf "%s/tls.key" $dirs.cert) -}}
{{- if .Values.tls.clientCaSecretName -}}
{{- $_ := set $tls "client_ca_file" (printf "%s/ca.crt" $dirs.clientCa) -}}
{{- $_ := set $tls "client_auth" .Values.tls.clientAuth -}}
{{- end -}}
{{- $_ := set $cfg.server "tls" $tls -}}
{{- end -}}
{{- $_ := set $cfg.admin "listen" (printf "0.0.0.0:%d" (int .Values.agent.ports.admin)) -}}
{{- if not (hasKey $cfg.upstream "url") -}}
{{- $_ := set $cfg.upstream "url" (printf "http://127.0.0.1:%d" (int .Values.app.port)) -}}
{{- end -}}
{{- toJson $cfg -}}
{{- end -}}

{{/* TLS on the main listener ----------------------------------------------------------------
Where the agent container mounts the Secrets: outside /etc/sidecar-agent (the ConfigMap), so no
mount is nested inside another read-only volume. */}}

{{- define "sidecar-agent.tlsDirs" -}}
{{- toJson (dict "cert" "/var/run/secrets/sidecar-agent/tls" "clientCa" "/var/run/secrets/sidecar-agent/client-ca") -}}
{{- end -}}

{{/* The main port's name: "https" with TLS, so meshes and ingress controllers that read port
names (Istio, for one) do not parse TLS as plain HTTP. */}}
{{- define "sidecar-agent.mainPortName" -}}
{{- if .Values.tls.enabled -}}https{{- else -}}http{{- end -}}
{{- end -}}

{{/* Values read back from the effective config, with the agent's built-in defaults. */}}

{{- define "sidecar-agent.adminEnabled" -}}
{{- $cfg := include "sidecar-agent.agentConfigJson" . | fromJson -}}
{{- if hasKey $cfg.admin "enabled" -}}{{ $cfg.admin.enabled }}{{- else -}}true{{- end -}}
{{- end -}}

{{- define "sidecar-agent.healthPrefix" -}}
{{- $cfg := include "sidecar-agent.agentConfigJson" . | fromJson -}}
{{- $cfg.health.path_prefix | default "/health" -}}
{{- end -}}

{{/* Where Prometheus scrapes: the admin listener's /metrics, or metrics.path on the main
listener when the admin listener is disabled (SPEC §2). */}}
{{- define "sidecar-agent.metricsPortName" -}}
{{- if eq (include "sidecar-agent.adminEnabled" .) "true" -}}admin{{- else -}}{{ include "sidecar-agent.mainPortName" . }}{{- end -}}
{{- end -}}

{{/* "https" when the scrape goes to the main listener and it serves TLS. */}}
{{- define "sidecar-agent.metricsScheme" -}}
{{- if and (ne (include "sidecar-agent.adminEnabled" .) "true") .Values.tls.enabled -}}https{{- else -}}http{{- end -}}
{{- end -}}

{{- define "sidecar-agent.metricsPort" -}}
{{- if eq (include "sidecar-agent.adminEnabled" .) "true" -}}{{ int .Values.agent.ports.admin }}{{- else -}}{{ int .Values.agent.ports.http }}{{- end -}}
{{- end -}}

{{- define "sidecar-agent.metricsPath" -}}
{{- $cfg := include "sidecar-agent.agentConfigJson" . | fromJson -}}
{{- if eq (include "sidecar-agent.adminEnabled" .) "true" -}}/metrics{{- else -}}{{ dig "metrics" "path" "/metrics" $cfg }}{{- end -}}
{{- end -}}

{{/* Shutdown budget -------------------------------------------------------------------------
Kubernetes counts preStop hooks inside terminationGracePeriodSeconds and SIGKILLs whatever is
still running when it ends. Worst case (native sidecar: the app's preStop runs first, the
agent's drain only after the app has exited) the pod needs
  app.preStopSleepSeconds + server.drain_delay_s + server.shutdown_timeout_s
so the grace period must be longer than that sum. */}}

{{- define "sidecar-agent.checkShutdownBudget" -}}
{{- $cfg := include "sidecar-agent.agentConfigJson" . | fromJson -}}
{{- $drain := 5.0 -}}
{{- if hasKey $cfg.server "drain_delay_s" -}}{{- $drain = $cfg.server.drain_delay_s -}}{{- end -}}
{{- $shutdown := 25.0 -}}
{{- if hasKey $cfg.server "shutdown_timeout_s" -}}{{- $shutdown = $cfg.server.shutdown_timeout_s -}}{{- end -}}
{{- $preStop := .Values.app.preStopSleepSeconds | default 0 -}}
{{- $needed := addf $preStop $drain $shutdown -}}
{{- if le (float64 .Values.terminationGracePeriodSeconds) $needed -}}
{{- fail (printf "terminationGracePeriodSeconds (%v) must be greater than app.preStopSleepSeconds (%v) + agent.config.server.drain_delay_s (%v) + agent.config.server.shutdown_timeout_s (%v) = %v, or the kubelet kills the pod before the agent's drain ends" .Values.terminationGracePeriodSeconds $preStop $drain $shutdown $needed) -}}
{{- end -}}
{{- range .Values.agent.env -}}
{{- if has .name (list "AGENT_SERVER_DRAIN_DELAY_S" "AGENT_SERVER_SHUTDOWN_TIMEOUT_S" "AGENT_SERVER_LISTEN" "AGENT_ADMIN_LISTEN" "AGENT_ADMIN_ENABLED" "AGENT_HEALTH_PATH_PREFIX" "AGENT_CONFIG" "AGENT_SERVER_TLS_CERT_FILE" "AGENT_SERVER_TLS_KEY_FILE" "AGENT_SERVER_TLS_CLIENT_CA_FILE" "AGENT_SERVER_TLS_CLIENT_AUTH" "AGENT_ADMIN_TOKEN") -}}
{{- if eq .name "AGENT_ADMIN_TOKEN" -}}
{{- fail "agent.env: AGENT_ADMIN_TOKEN is set by the chart from adminToken: set adminToken.existingSecret (and adminToken.secretKey) to use your own Secret" -}}
{{- end -}}
{{- fail (printf "agent.env: %s would hide a setting the chart reads; set it under agent.config (or agent.ports, tls) instead" .name) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The Secret the agent's admin token comes from: adminToken.existingSecret, or the one the
chart generates (templates/admin-token-secret.yaml). */}}
{{- define "sidecar-agent.adminTokenSecretName" -}}
{{- .Values.adminToken.existingSecret | default (printf "%s-admin-token" (include "sidecar-agent.fullname" .)) -}}
{{- end -}}

{{/* Secrets stay in Secrets: agent.toml lands in a ConfigMap, readable by anyone who can read
the namespace's ConfigMaps. A database check needs a DSN: the agent exits 2 at start without one. */}}
{{- define "sidecar-agent.checkSecrets" -}}
{{- $cfg := include "sidecar-agent.agentConfigJson" . | fromJson -}}
{{- if $cfg.admin.token -}}
{{- fail "agent.config.admin.token would be stored in a ConfigMap: the chart generates a token into a Secret; to choose it, put it in a Secret of yours and set adminToken.existingSecret (and adminToken.secretKey)" -}}
{{- end -}}
{{- if $cfg.admin.token_env -}}
{{- fail "agent.config.admin.token_env would be ignored: the chart gives the agent AGENT_ADMIN_TOKEN from adminToken's Secret, and that wins; set adminToken.existingSecret to use a Secret of yours" -}}
{{- end -}}
{{- range $name, $check := (dig "checks" dict $cfg) -}}
{{- if and (kindIs "map" $check) $check.dsn -}}
{{- fail (printf "agent.config.checks.%s.dsn would be stored in a ConfigMap: use database.existingSecret (the agent reads the DSN from the environment variable named by dsn_env)" $name) -}}
{{- end -}}
{{- end -}}
{{- $db := dig "checks" "database" dict $cfg -}}
{{- if and $db (ne (toString (dig "enabled" true $db)) "false") (not .Values.database.existingSecret) -}}
{{- fail "agent.config.checks.database is configured but has no DSN: set database.existingSecret (a Secret holding the DSN), or remove the checks.database table" -}}
{{- end -}}
{{- end -}}

{{/* TOML rendering ---------------------------------------------------------------------------
Helm's toToml writes every YAML number as a float (2 -> 2.0, 1000000 -> 1e+06), which the
agent rejects for integer keys. The agent accepts integers for float keys, so whole numbers are
written as integers and everything else as-is. Strings go through toRawJson: its escapes are valid
TOML basic-string escapes. */}}

{{- define "sidecar-agent.toml" -}}
{{- include "sidecar-agent.toml.table" (dict "path" "" "table" .) -}}
{{- end -}}

{{- define "sidecar-agent.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}{{ . }}{{- else -}}{{ toRawJson . }}{{- end -}}
{{- end -}}

{{- define "sidecar-agent.toml.value" -}}
{{- if kindIs "string" . -}}
{{- toRawJson . -}}
{{- else if kindIs "bool" . -}}
{{- . -}}
{{- else if kindIs "float64" . -}}
{{- if eq (floor .) . -}}{{ int64 . }}{{- else -}}{{ . }}{{- end -}}
{{- else if or (kindIs "int" .) (kindIs "int64" .) -}}
{{- . -}}
{{- else if kindIs "slice" . -}}
[{{- range $i, $item := . -}}{{ if $i }}, {{ end }}{{ include "sidecar-agent.toml.value" $item }}{{- end -}}]
{{- else -}}
{{- fail (printf "agent.config: cannot write a %s value to TOML" (kindOf .)) -}}
{{- end -}}
{{- end -}}

{{- define "sidecar-agent.toml.table" -}}
{{- $path := .path -}}
{{- $scalars := dict -}}
{{- $tables := dict -}}
{{- range $key, $value := .table -}}
{{- if kindIs "map" $value -}}
{{- $_ := set $tables $key $value -}}
{{- else if not (kindIs "invalid" $value) -}}
{{- $_ := set $scalars $key $value -}}
{{- end -}}
{{- end -}}
{{- if and $path (or $scalars (not $tables)) }}

[{{ $path }}]
{{- end -}}
{{- range $key, $value := $scalars }}
{{ include "sidecar-agent.toml.key" $key }} = {{ include "sidecar-agent.toml.value" $value }}
{{- end -}}
{{- range $key, $value := $tables -}}
{{- $child := include "sidecar-agent.toml.key" $key -}}
{{- if $path -}}{{- $child = printf "%s.%s" $path $child -}}{{- end -}}
{{- include "sidecar-agent.toml.table" (dict "path" $child "table" $value) -}}
{{- end -}}
{{- end -}}
