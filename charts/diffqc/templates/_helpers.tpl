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
{{- $_ = required "postgres.existingSecret is required (a Secret holding the SQLAlchemy URL)" .Values.postgres.existingSecret -}}
{{- $_ = required "influx.existingSecret is required (a Secret holding the InfluxDB token)" .Values.influx.existingSecret -}}
{{- $_ = required "services.gateway.publicUrl is required (the gateway's URL as the MES reaches it: the links in alerts)" .Values.services.gateway.publicUrl -}}
{{- if and (hasPrefix "SASL_" .Values.kafka.securityProtocol) (not .Values.kafka.sasl.existingSecret) -}}
{{- fail (printf "kafka.sasl.existingSecret is required with kafka.securityProtocol %s (a Secret with the SASL user name and password)" .Values.kafka.securityProtocol) -}}
{{- end -}}
{{- if and .Values.grpcTls.enabled (not .Values.grpcTls.existingSecret) -}}
{{- fail "grpcTls.existingSecret is required when grpcTls.enabled (a kubernetes.io/tls Secret with tls.crt, tls.key, ca.crt)" -}}
{{- end -}}
{{- $gateway := .Values.services.gateway -}}
{{- if and $gateway.enabled (not $gateway.sessionSecret.existingSecret) (gt (int (ternary $gateway.autoscaling.maxReplicas $gateway.replicas $gateway.autoscaling.enabled)) 1) -}}
{{- fail "services.gateway.sessionSecret.existingSecret is required when more than one gateway replica serves the dashboard (a Secret with the session-cookie HMAC secret)" -}}
{{- end -}}
{{- if and .Values.trainer.enabled (ne .Values.triton.modelRepository.source "pvc") -}}
{{- fail "trainer.enabled needs triton.modelRepository.source pvc: the trainer stages new model versions into the repository Triton serves" -}}
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

{{/* What each workload connects to: its settings, its Secrets and its egress follow from this list.
     (dict "name" "scoring") -> JSON list. */}}
{{- define "diffqc.uses" -}}
{{- $uses := dict
  "ingestion" (list "kafka" "postgres" "blobStore")
  "preprocessing" (list "kafka" "postgres" "blobStore")
  "inference" (list "kafka" "triton" "postgres" "blobStore")
  "scoring" (list "kafka" "postgres" "influx" "schemaRegistry" "links" "blobStore")
  "bridge" (list "kafka" "postgres" "schemaRegistry" "mes" "links")
  "gateway" (list "postgres" "ingestion" "triton" "links" "blobStore")
  "trainer" (list "postgres" "blobStore")
  "retention" (list "postgres" "blobStore")
  "topics" (list "kafka") -}}
{{- get $uses .name | toJson -}}
{{- end -}}

{{/* Security contexts: non-root with a fixed UID, read-only root, no privilege escalation, no
     capabilities, RuntimeDefault seccomp. (dict "uid" 10001). */}}
{{- define "diffqc.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
fsGroup: {{ .uid }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "diffqc.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The port of a URL: explicit, else the scheme's. */}}
{{- define "diffqc.urlPort" -}}
{{- $url := urlParse . -}}
{{- $parts := splitList ":" $url.host -}}
{{- if gt (len $parts) 1 -}}{{ last $parts }}{{- else if eq $url.scheme "https" -}}443{{- else -}}80{{- end -}}
{{- end -}}

{{/* Egress ports of one backing service, a JSON list: (dict "root" $ "use" "kafka"). */}}
{{- define "diffqc.egressPorts" -}}
{{- $v := .root.Values -}}
{{- $ports := list -}}
{{- if eq .use "kafka" -}}
{{- range splitList "," $v.kafka.bootstrapServers -}}{{- $ports = append $ports (last (splitList ":" (trim .))) -}}{{- end -}}
{{- else if eq .use "postgres" -}}
{{- $ports = list (toString $v.networkPolicy.egress.postgres.port) -}}
{{- else if eq .use "influx" -}}
{{- $ports = list (include "diffqc.urlPort" $v.influx.url) -}}
{{- else if eq .use "schemaRegistry" -}}
{{- $ports = list (include "diffqc.urlPort" $v.schemaRegistry.url) -}}
{{- else if eq .use "blobStore" -}}
{{- $ports = list (ternary (include "diffqc.urlPort" $v.blobStore.s3.endpoint) "443" (ne $v.blobStore.s3.endpoint "")) -}}
{{- else if eq .use "mes" -}}
{{- $ports = list (include "diffqc.urlPort" $v.services.bridge.mesWebhookUrl) -}}
{{- with $v.services.bridge.lineStopUrl }}{{ $ports = append $ports (include "diffqc.urlPort" .) }}{{ end -}}
{{- end -}}
{{- $ports | uniq | toJson -}}
{{- end -}}

{{/* Mount paths of the Secrets with TLS material. */}}
{{- define "diffqc.kafkaCaDir" -}}/etc/diffqc/kafka-ca{{- end -}}
{{- define "diffqc.registryCaDir" -}}/etc/diffqc/registry-ca{{- end -}}
{{- define "diffqc.grpcTlsDir" -}}/etc/diffqc/grpc-tls{{- end -}}

{{/* Kafka transport security of one Kafka client container: env entries. */}}
{{- define "diffqc.kafkaEnv" -}}
{{- $k := .Values.kafka -}}
- name: DIFFQC_KAFKA_SECURITY_PROTOCOL
  value: {{ $k.securityProtocol | quote }}
{{- if hasPrefix "SASL_" $k.securityProtocol }}
- name: DIFFQC_KAFKA_SASL_MECHANISM
  value: {{ $k.saslMechanism | quote }}
- name: DIFFQC_KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef: {name: {{ $k.sasl.existingSecret }}, key: {{ $k.sasl.usernameKey }}}
- name: DIFFQC_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ $k.sasl.existingSecret }}, key: {{ $k.sasl.passwordKey }}}
{{- end }}
{{- if $k.tlsCa.existingSecret }}
- name: DIFFQC_KAFKA_SSL_CA_LOCATION
  value: {{ printf "%s/%s" (include "diffqc.kafkaCaDir" .) $k.tlsCa.key | quote }}
{{- end }}
{{- end -}}

{{/* Secret volumes a workload mounts, and their mounts: (dict "root" $ "uses" $uses). */}}
{{- define "diffqc.secretVolumes" -}}
{{- $v := .root.Values -}}
{{- if and (has "kafka" .uses) $v.kafka.tlsCa.existingSecret }}
- name: kafka-ca
  secret: {secretName: {{ $v.kafka.tlsCa.existingSecret }}, defaultMode: 0440}
{{- end }}
{{- if and (has "schemaRegistry" .uses) $v.schemaRegistry.tlsCa.existingSecret }}
- name: registry-ca
  secret: {secretName: {{ $v.schemaRegistry.tlsCa.existingSecret }}, defaultMode: 0440}
{{- end }}
{{- if and .grpc $v.grpcTls.enabled }}
- name: grpc-tls
  secret: {secretName: {{ $v.grpcTls.existingSecret }}, defaultMode: 0440}
{{- end }}
{{- end -}}

{{- define "diffqc.secretMounts" -}}
{{- $v := .root.Values -}}
{{- if and (has "kafka" .uses) $v.kafka.tlsCa.existingSecret }}
- {name: kafka-ca, mountPath: {{ include "diffqc.kafkaCaDir" . }}, readOnly: true}
{{- end }}
{{- if and (has "schemaRegistry" .uses) $v.schemaRegistry.tlsCa.existingSecret }}
- {name: registry-ca, mountPath: {{ include "diffqc.registryCaDir" . }}, readOnly: true}
{{- end }}
{{- if and .grpc $v.grpcTls.enabled }}
- {name: grpc-tls, mountPath: {{ include "diffqc.grpcTlsDir" . }}, readOnly: true}
{{- end }}
{{- end -}}

{{/* The DIFFQC_* environment of one service container: (dict "root" $ "name" "scoring" "svc" $svc). */}}
{{- define "diffqc.env" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $d := $v.serviceDefaults -}}
{{- $uses := include "diffqc.uses" . | fromJsonArray -}}
- name: DIFFQC_SERVICE_GRPC_PORT
  value: {{ $d.grpcPort | quote }}
- name: DIFFQC_SERVICE_STREAM_WORKERS
  value: {{ default $d.streamWorkers .svc.streamWorkers | quote }}
{{- if has "kafka" $uses }}
{{ include "diffqc.kafkaEnv" $root }}
{{- end }}
{{- if has "postgres" $uses }}
- name: DIFFQC_DATABASE_URL
  valueFrom:
    secretKeyRef: {name: {{ $v.postgres.existingSecret }}, key: {{ $v.postgres.existingSecretKey }}}
{{- end }}
{{- if has "blobStore" $uses }}
{{- include "diffqc.blobStoreEnv" $root }}
{{- end }}
{{- if has "influx" $uses }}
- name: DIFFQC_INFLUX_TOKEN
  valueFrom:
    secretKeyRef: {name: {{ $v.influx.existingSecret }}, key: {{ $v.influx.existingSecretKey }}}
{{- end }}
{{- if has "schemaRegistry" $uses }}
{{- with $v.schemaRegistry.auth.existingSecret }}
- name: DIFFQC_REGISTRY_USERNAME
  valueFrom:
    secretKeyRef: {name: {{ . }}, key: {{ $v.schemaRegistry.auth.usernameKey }}}
- name: DIFFQC_REGISTRY_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ . }}, key: {{ $v.schemaRegistry.auth.passwordKey }}}
{{- end }}
{{- if $v.schemaRegistry.tlsCa.existingSecret }}
- name: DIFFQC_REGISTRY_CA_FILE
  value: {{ printf "%s/%s" (include "diffqc.registryCaDir" .) $v.schemaRegistry.tlsCa.key | quote }}
{{- end }}
{{- end }}
{{- if $v.grpcTls.enabled }}
- name: DIFFQC_GRPC_TLS_CERT_FILE
  value: {{ printf "%s/tls.crt" (include "diffqc.grpcTlsDir" .) | quote }}
- name: DIFFQC_GRPC_TLS_KEY_FILE
  value: {{ printf "%s/tls.key" (include "diffqc.grpcTlsDir" .) | quote }}
- name: DIFFQC_GRPC_TLS_CA_FILE
  value: {{ printf "%s/ca.crt" (include "diffqc.grpcTlsDir" .) | quote }}
- name: DIFFQC_GRPC_TLS_CLIENT_AUTH
  value: {{ $v.grpcTls.clientAuth | quote }}
{{- end }}
{{- if has "links" $uses }}
- name: DIFFQC_GATEWAY_PUBLIC_URL
  value: {{ $v.services.gateway.publicUrl | quote }}
{{- with $v.services.gateway.linkSecret.existingSecret }}
- name: DIFFQC_GATEWAY_LINK_SECRET
  valueFrom:
    secretKeyRef: {name: {{ . }}, key: {{ $v.services.gateway.linkSecret.existingSecretKey }}}
{{- end }}
{{- end }}
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
    secretKeyRef: {name: {{ .svc.mesAuth.existingSecret }}, key: {{ .svc.mesAuth.existingSecretKey }}}
{{- end }}
{{- end }}
{{- if eq .name "gateway" }}
- name: DIFFQC_GATEWAY_HTTP_HOST
  value: "0.0.0.0"
- name: DIFFQC_GATEWAY_HTTP_PORT
  value: {{ .svc.httpPort | quote }}
- name: DIFFQC_GATEWAY_INGESTION_URL
  value: {{ printf "%s-ingestion:%v" (include "diffqc.fullname" $root) $d.grpcPort | quote }}
{{- with .svc.sessionSecret.existingSecret }}
- name: DIFFQC_GATEWAY_SESSION_SECRET
  valueFrom:
    secretKeyRef: {name: {{ . }}, key: {{ $v.services.gateway.sessionSecret.existingSecretKey }}}
{{- end }}
{{- if .svc.apiKeys.existingSecret }}
- name: DIFFQC_GATEWAY_API_KEYS
  valueFrom:
    secretKeyRef: {name: {{ .svc.apiKeys.existingSecret }}, key: {{ .svc.apiKeys.existingSecretKey }}}
{{- end }}
{{- end }}
{{- end -}}

{{/* The blob store's credentials (the rest of DIFFQC_BLOBS_* is in the ConfigMap): env entries. */}}
{{- define "diffqc.blobStoreEnv" -}}
{{- $s3 := .Values.blobStore.s3 -}}
{{- if and (eq .Values.blobStore.backend "s3") $s3.existingSecret }}
- name: DIFFQC_BLOBS_S3_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef: {name: {{ $s3.existingSecret }}, key: {{ $s3.accessKeyIdKey }}}
- name: DIFFQC_BLOBS_S3_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef: {name: {{ $s3.existingSecret }}, key: {{ $s3.secretAccessKeyKey }}}
{{- end }}
{{- end -}}

{{/* Whether a workload mounts the blobs volume: (dict "root" $ "uses" $uses) -> "true" or "". */}}
{{- define "diffqc.mountsBlobs" -}}
{{- if and (has "blobStore" .uses) (eq .root.Values.blobStore.backend "file") }}true{{ end -}}
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

{{/* Ingress rules of one service's NetworkPolicy (empty: nothing may call it): (dict "root" $ "name" "ingestion").
     The gRPC APIs of preprocessing, inference, scoring and bridge have no caller in the pipeline
     (it runs over Kafka): only their metrics are admitted. */}}
{{- define "diffqc.ingressRules" -}}
{{- $ := .root -}}
{{- $np := $.Values.networkPolicy -}}
{{- if eq .name "gateway" }}
# HTTP only through the ingress controller.
- ports:
    - port: http
  from:
    - namespaceSelector:
        {{- toYaml $np.ingressController.namespaceSelector | nindent 8 }}
      podSelector:
        {{- toYaml $np.ingressController.podSelector | nindent 8 }}
{{- end }}
{{- if eq .name "ingestion" }}
# Frames: uploads through the gateway, streams from the line PCs and cameras.
- ports:
    - port: grpc
  from:
    - podSelector:
        matchLabels:
          {{- include "diffqc.selectorLabels" (dict "root" $ "component" "gateway") | nindent 10 }}
    {{- with $np.ingestionFrom }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}
{{- if and $np.metricsFrom (not (has .name (list "gateway" "topics" "retention"))) }}
- ports:
    - port: metrics
  from:
    {{- toYaml $np.metricsFrom | nindent 4 }}
{{- end }}
{{- end -}}
