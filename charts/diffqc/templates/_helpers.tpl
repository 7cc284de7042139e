{{/* Names and labels. */}}
{{- define "diffqc.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "diffqc.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: diffqc
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "scoring"). */}}
{{- define "diffqc.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "diffqc.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}

{{- define "diffqc.secretName" -}}
{{- printf "%s-secrets" (include "diffqc.fullname" .) -}}
{{- end -}}

{{- define "diffqc.tritonGrpcUrl" -}}
{{- if .Values.triton.enabled -}}
{{- printf "%s-triton:8001" (include "diffqc.fullname" .) -}}
{{- else -}}
{{- required "triton.grpcUrl is required when triton.enabled is false" .Values.triton.grpcUrl -}}
{{- end -}}
{{- end -}}

{{/* Consumer groups may hold at most this many consumers: max replicas x consumers per pod. */}}
{{- define "diffqc.maxConsumers" -}}
{{- $svc := .svc -}}
{{- $max := int $svc.replicas -}}
{{- if or $svc.autoscaling.enabled (and .root.Values.keda.enabled $svc.consumes) -}}
{{- $max = int $svc.autoscaling.maxReplicas -}}
{{- end -}}
{{- mul $max (int (default .root.Values.serviceDefaults.streamWorkers $svc.streamWorkers)) -}}
{{- end -}}

{{/* Chart-time checks: required endpoints and secrets, and partitions enough for every group. */}}
{{- define "diffqc.validate" -}}
{{- $ := . -}}
{{- $_ := required "kafka.bootstrapServers is required (the plant's Kafka brokers, host:port,...)" .Values.kafka.bootstrapServers -}}
{{- $_ = required "schemaRegistry.url is required (the plant's Schema Registry)" .Values.schemaRegistry.url -}}
{{- $_ = required "influx.url is required (the plant's InfluxDB 2.x)" .Values.influx.url -}}
{{- if not (or .Values.postgres.existingSecret .Values.postgres.url) -}}
{{- fail "postgres.existingSecret (or, for development, postgres.url) is required" -}}
{{- end -}}
{{- if not (or .Values.influx.existingSecret .Values.influx.token) -}}
{{- fail "influx.existingSecret (or, for development, influx.token) is required" -}}
{{- end -}}
{{- if and .Values.services.bridge.enabled (not .Values.services.bridge.mesWebhookUrl) -}}
{{- fail "services.bridge.mesWebhookUrl is required when the bridge is enabled" -}}
{{- end -}}
{{- range $name, $svc := .Values.services -}}
{{- if and $svc.enabled $svc.consumes -}}
{{- $consumers := int (include "diffqc.maxConsumers" (dict "root" $ "svc" $svc)) -}}
{{- if gt $consumers (int $.Values.kafka.partitions) -}}
{{- fail (printf "kafka.partitions (%d) is less than the %d consumers services.%s can run in its group (max replicas x streamWorkers): raise kafka.partitions or lower the replicas" (int $.Values.kafka.partitions) $consumers $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The DIFFQC_* environment of one service container: (dict "root" $ "name" "scoring" "svc" $svc). */}}
{{- define "diffqc.env" -}}
{{- $root := .root -}}
{{- $d := $root.Values.serviceDefaults -}}
- name: DIFFQC_SERVICE_GRPC_PORT
  value: {{ $d.grpcPort | quote }}
- name: DIFFQC_SERVICE_STREAM_WORKERS
  value: {{ default $d.streamWorkers .svc.streamWorkers | quote }}
- name: DIFFQC_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ default (include "diffqc.secretName" $root) $root.Values.postgres.existingSecret }}
      key: {{ $root.Values.postgres.existingSecretKey }}
- name: DIFFQC_INFLUX_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ default (include "diffqc.secretName" $root) $root.Values.influx.existingSecret }}
      key: {{ $root.Values.influx.existingSecretKey }}
{{- if eq .name "bridge" }}
- name: DIFFQC_BRIDGE_MES_WEBHOOK_URL
  value: {{ .svc.mesWebhookUrl | quote }}
{{- if .svc.lineStopUrl }}
- name: DIFFQC_BRIDGE_LINE_STOP_URL
  value: {{ .svc.lineStopUrl | quote }}
{{- end }}
{{- if .svc.mesAuth.existingSecret }}
- name: DIFFQC_BRIDGE_MES_AUTH_VALUE
  valueFrom:
    secretKeyRef:
      name: {{ .svc.mesAuth.existingSecret }}
      key: {{ .svc.mesAuth.existingSecretKey }}
{{- end }}
{{- end }}
{{- if eq .name "gateway" }}
- name: DIFFQC_GATEWAY_HTTP_HOST
  value: "0.0.0.0"
- name: DIFFQC_GATEWAY_HTTP_PORT
  value: {{ .svc.httpPort | quote }}
- name: DIFFQC_GATEWAY_INGESTION_URL
  value: {{ printf "%s-ingestion:%v" (include "diffqc.fullname" $root) $d.grpcPort | quote }}
{{- if .svc.apiKeys.existingSecret }}
- name: DIFFQC_GATEWAY_API_KEYS
  valueFrom:
    secretKeyRef:
      name: {{ .svc.apiKeys.existingSecret }}
      key: {{ .svc.apiKeys.existingSecretKey }}
{{- end }}
{{- end }}
{{- end -}}

{{/* A PodDisruptionBudget spec with exactly one of minAvailable / maxUnavailable: (dict "pdb" . "what" "services.x"). */}}
{{- define "diffqc.pdbSpec" -}}
{{- $set := 0 -}}
{{- range $key, $value := .pdb -}}{{- if not (kindIs "invalid" $value) -}}{{- $set = add1 $set -}}{{- end -}}{{- end -}}
{{- if ne $set 1 -}}
{{- fail (printf "%s.pdb needs exactly one of minAvailable or maxUnavailable (set the other to null)" .what) -}}
{{- end -}}
{{- range $key, $value := .pdb }}
{{- if not (kindIs "invalid" $value) }}
{{ $key }}: {{ $value }}
{{- end }}
{{- end }}
{{- end -}}
