{{/* Names */}}
{{- define "t2i.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "t2i.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "worker") */}}
{{- define "t2i.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "t2i.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "t2i.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "t2i.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "t2i.workerImage" -}}
{{- if gt (int .Values.worker.gpu) 0 -}}
{{- printf "%s:%s" .Values.worker.gpuImage.repository (default .Chart.AppVersion .Values.worker.gpuImage.tag) -}}
{{- else -}}
{{- include "t2i.image" . -}}
{{- end -}}
{{- end -}}

{{/* Where Kafka and S3 are: the values, or the in-chart examples. */}}
{{- define "t2i.kafkaBrokers" -}}
{{- if .Values.kafka.brokers -}}
{{- .Values.kafka.brokers -}}
{{- else if .Values.examples.strimzi.enabled -}}
{{- printf "%s-kafka-bootstrap:9092" .Values.examples.strimzi.clusterName -}}
{{- else -}}
{{- fail "kafka.brokers is required (or enable examples.strimzi)" -}}
{{- end -}}
{{- end -}}

{{- define "t2i.s3Endpoint" -}}
{{- if .Values.s3.endpoint -}}
{{- .Values.s3.endpoint -}}
{{- else if .Values.examples.minio.enabled -}}
{{- printf "http://%s-minio:9000" (include "t2i.fullname" .) -}}
{{- else -}}
{{- fail "s3.endpoint is required (e.g. https://s3.us-east-1.amazonaws.com), or enable examples.minio" -}}
{{- end -}}
{{- end -}}

{{- define "t2i.promptsTopic" -}}
{{- printf "%sprompts" .Values.topicPrefix -}}
{{- end -}}

{{/* Kafka connection variables (services/common/config.ts); the SASL credentials from a Secret only. */}}
{{- define "t2i.kafkaEnv" -}}
- name: KAFKA_BROKERS
  value: {{ include "t2i.kafkaBrokers" . | quote }}
- name: KAFKA_SSL
  value: {{ .Values.kafka.ssl | quote }}
{{- if .Values.kafka.sasl.mechanism }}
{{- if not .Values.kafka.sasl.existingSecret }}
{{- fail "kafka.sasl.existingSecret is required with kafka.sasl.mechanism" }}
{{- end }}
- name: KAFKA_SASL_MECHANISM
  value: {{ .Values.kafka.sasl.mechanism | quote }}
- name: KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.sasl.existingSecret }}
      key: {{ .Values.kafka.sasl.usernameKey }}
- name: KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.sasl.existingSecret }}
      key: {{ .Values.kafka.sasl.passwordKey }}
{{- end }}
- name: T2I_TOPIC_PREFIX
  value: {{ .Values.topicPrefix | quote }}
- name: T2I_PROMPT_PARTITIONS
  value: {{ .Values.promptPartitions | quote }}
{{- with .Values.kafka.schemaRegistry }}
{{- if and (eq $.Values.kafka.wireFormat "confluent") (not .url) }}
{{- fail "kafka.schemaRegistry.url is required with kafka.wireFormat=confluent" }}
{{- end }}
{{- if eq $.Values.kafka.wireFormat "confluent" }}
- name: T2I_WIRE_FORMAT
  value: confluent
{{- end }}
{{- if .url }}
- name: T2I_SCHEMA_REGISTRY_URL
  value: {{ .url | quote }}
{{- if .existingSecret }}
- name: T2I_SCHEMA_REGISTRY_USER
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .usernameKey }}
- name: T2I_SCHEMA_REGISTRY_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .passwordKey }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* S3 variables; the key pair from a Secret only: s3.existingSecret, or the one passed as "secret" (dict "root" . "secret" name). */}}
{{- define "t2i.s3Env" -}}
{{ include "t2i.s3EnvWith" (dict "root" . "secret" .Values.s3.existingSecret) }}
{{- end -}}

{{- define "t2i.s3EnvWith" -}}
{{- $secret := .secret -}}
{{- with .root -}}
- name: S3_ENDPOINT
  value: {{ include "t2i.s3Endpoint" . | quote }}
- name: S3_REGION
  value: {{ .Values.s3.region | quote }}
- name: S3_BUCKET
  value: {{ .Values.s3.bucket | quote }}
{{- if .Values.s3.forcePathStyle }}
- name: S3_FORCE_PATH_STYLE
  value: {{ .Values.s3.forcePathStyle | quote }}
{{- end }}
{{- if .Values.s3.publicBaseUrl }}
- name: S3_PUBLIC_BASE_URL
  value: {{ .Values.s3.publicBaseUrl | quote }}
{{- end }}
{{- if $secret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.s3.accessKeyIdKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.s3.secretAccessKeyKey }}
{{- else if ne .Values.s3.endpoint "aws" }}
{{- fail "s3.existingSecret is required unless s3.endpoint is \"aws\" (Amazon S3 with the pod's IAM role: IRSA or EKS Pod Identity)" }}
{{- end }}
- name: T2I_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
{{- end -}}
{{- end -}}

{{/* The environment every service shares: where Kafka and S3 are. */}}
{{- define "t2i.connectionEnv" -}}
{{ include "t2i.kafkaEnv" . }}
{{ include "t2i.s3Env" . }}
{{- end -}}

{{/* /tmp for tsx's compile cache and temporary files: the root filesystem is read-only. */}}
{{- define "t2i.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 1Gi
{{- end -}}

{{- define "t2i.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* Pod annotations for Prometheus's kubernetes_sd "prometheus.io/*" convention; the argument is the metrics port. */}}
{{- define "t2i.scrapeAnnotations" -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ . | quote }}
prometheus.io/path: /metrics
{{- end -}}
