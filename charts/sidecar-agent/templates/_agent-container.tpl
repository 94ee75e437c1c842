{{/* The agent container: under containers, or under initContainers as a native sidecar. */}}
{{- define "sidecar-agent.agentContainer" -}}
{{- $cfg := include "sidecar-agent.agentConfigJson" . | fromJson -}}
{{- $prefix := include "sidecar-agent.healthPrefix" . -}}
{{- $dsnEnv := dig "checks" "database" "dsn_env" "DATABASE_URL" $cfg -}}
{{- $probes := .Values.agent.probes -}}
{{- $port := include "sidecar-agent.mainPortName" . -}}
{{- $tlsDirs := include "sidecar-agent.tlsDirs" . | fromJson -}}
{{- $isNative := include "sidecar-agent.isNativeSidecar" . -}}
- name: agent
  image: {{ include "sidecar-agent.agentImage" . }}
  imagePullPolicy: {{ .Values.agent.image.pullPolicy }}
  {{- if $isNative }}
  restartPolicy: Always
  {{- end }}
  env:
    - name: AGENT_CONFIG
      value: /etc/sidecar-agent/agent.toml
    # Downward API: the agent puts them on its traces as k8s.pod.name and k8s.namespace.name
    # (agent/tracing.py reads these two itself; OTEL_RESOURCE_ATTRIBUTES is not needed for them).
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    - name: POD_NAMESPACE
      valueFrom:
        fieldRef:
          fieldPath: metadata.namespace
    # The bearer token for the admin listener's details, /status and POST /admin/*
    # (`sidecar-agent drain` in the container reads it too).
    - name: AGENT_ADMIN_TOKEN
      valueFrom:
        secretKeyRef:
          name: {{ include "sidecar-agent.adminTokenSecretName" . }}
          key: {{ .Values.adminToken.secretKey }}
    {{- if .Values.database.existingSecret }}
    - name: {{ $dsnEnv }}
      valueFrom:
        secretKeyRef:
          name: {{ .Values.database.existingSecret }}
          key: {{ .Values.database.secretKey }}
    {{- end }}
    {{- with .Values.agent.env }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    - name: {{ $port }}
      containerPort: {{ .Values.agent.ports.http }}
      protocol: TCP
    {{- if eq (include "sidecar-agent.adminEnabled" .) "true" }}
    - name: admin
      containerPort: {{ .Values.agent.ports.admin }}
      protocol: TCP
    {{- end }}
  # Every probe reads the agent's in-memory snapshot: a probe never reaches the database or
  # the app, so a probe storm is not load and a hung database never makes a probe slow.
  {{- if .Values.tls.enabled }}
  # scheme HTTPS: the kubelet does the handshake but does not verify the certificate (it asks
  # whether the agent answers, not who it is), so the certificate need not name the pod IP.
  {{- end }}
  startupProbe:
    httpGet:
      {{- if $isNative }}
      # A native sidecar's startupProbe gates the app's start, and /health/startup waits for
      # the app's own check: that would never pass. Readiness still waits for the checks.
      path: {{ $prefix }}/live
      {{- else }}
      path: {{ $prefix }}/startup
      {{- end }}
      port: {{ $port }}
      {{- if .Values.tls.enabled }}
      scheme: HTTPS
      {{- end }}
    periodSeconds: {{ $probes.startup.periodSeconds }}
    timeoutSeconds: {{ $probes.startup.timeoutSeconds }}
    failureThreshold: {{ $probes.startup.failureThreshold }}
  readinessProbe:
    httpGet:
      path: {{ $prefix }}/ready
      port: {{ $port }}
      {{- if .Values.tls.enabled }}
      scheme: HTTPS
      {{- end }}
    periodSeconds: {{ $probes.readiness.periodSeconds }}
    timeoutSeconds: {{ $probes.readiness.timeoutSeconds }}
    failureThreshold: {{ $probes.readiness.failureThreshold }}
    successThreshold: {{ $probes.readiness.successThreshold }}
  livenessProbe:
    httpGet:
      path: {{ $prefix }}/live
      port: {{ $port }}
      {{- if .Values.tls.enabled }}
      scheme: HTTPS
      {{- end }}
    periodSeconds: {{ $probes.liveness.periodSeconds }}
    timeoutSeconds: {{ $probes.liveness.timeoutSeconds }}
    failureThreshold: {{ $probes.liveness.failureThreshold }}
  {{- with .Values.agent.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml (merge (deepCopy .Values.agent.securityContext) .Values.containerSecurityContext) | nindent 4 }}
  volumeMounts:
    - name: agent-config
      mountPath: /etc/sidecar-agent
      readOnly: true
    - name: agent-tmp
      mountPath: /tmp
    {{- if .Values.tls.enabled }}
    # The Secret's directory, never a subPath: the kubelet updates a Secret volume by swapping its
    # ..data symlink, which a subPath mount (bound to the file it first saw) never follows; the
    # agent reloads the certificate when the files' content changes, so it must see the swap.
    - name: agent-tls
      mountPath: {{ $tlsDirs.cert }}
      readOnly: true
    {{- if .Values.tls.clientCaSecretName }}
    - name: agent-client-ca
      mountPath: {{ $tlsDirs.clientCa }}
      readOnly: true
    {{- end }}
    {{- end }}
{{- end -}}
