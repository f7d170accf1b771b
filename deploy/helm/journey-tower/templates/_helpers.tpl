{{/* Names, labels and the worker's environment, shared by every template. */}}

{{- define "tower.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tower.fullname" -}}
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

{{/* The headless Service: gives every replica the DNS name <pod>.<headless>.<ns>.svc */}}
{{- define "tower.headless" -}}
{{- printf "%s-headless" (include "tower.fullname" . | trunc 54 | trimSuffix "-") -}}
{{- end -}}

{{- define "tower.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tower.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tower.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "tower.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: worker
{{- end -}}

{{- define "tower.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tower.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "tower.scheme" -}}
{{- if .Values.web.tls.enabled }}https{{ else }}http{{ end -}}
{{- end -}}

{{/* The host suffix of every replica: <headless>.<ns>.svc[.<cluster domain>] */}}
{{- define "tower.peerDomain" -}}
{{- $domain := printf "%s.$(POD_NAMESPACE).svc" (include "tower.headless" .) -}}
{{- if .Values.web.clusterDomain -}}
{{- $domain = printf "%s.%s" $domain .Values.web.clusterDomain -}}
{{- end -}}
{{- $domain -}}
{{- end -}}

{{/* Strimzi KafkaUser name of a role */}}
{{- define "tower.kafkaUser" -}}
{{- $root := index . 0 -}}
{{- $role := index . 1 -}}
{{- $prefix := default (printf "%s-" (include "tower.fullname" $root)) $root.Values.strimzi.users.namePrefix -}}
{{- printf "%s%s" $prefix $role | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tower.saslUsername" -}}
{{- if .Values.kafka.sasl.username -}}
{{- .Values.kafka.sasl.username -}}
{{- else if .Values.strimzi.users.enabled -}}
{{- include "tower.kafkaUser" (list . "tower") -}}
{{- end -}}
{{- end -}}

{{- define "tower.saslSecret" -}}
{{- if .Values.kafka.sasl.password -}}
{{- printf "%s-kafka-sasl" (include "tower.fullname" .) -}}
{{- else if .Values.kafka.sasl.existingSecret -}}
{{- .Values.kafka.sasl.existingSecret -}}
{{- else if .Values.strimzi.users.enabled -}}
{{- include "tower.kafkaUser" (list . "tower") -}}
{{- end -}}
{{- end -}}

{{- define "tower.saslSecretKey" -}}
{{- if .Values.kafka.sasl.password }}password{{ else }}{{ .Values.kafka.sasl.existingSecretKey }}{{ end -}}
{{- end -}}

{{- define "tower.usesSasl" -}}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol }}true{{ end -}}
{{- end -}}

{{- define "tower.usesKafkaTls" -}}
{{- if or (eq .Values.kafka.securityProtocol "SSL") (eq .Values.kafka.securityProtocol "SASL_SSL") }}true{{ end -}}
{{- end -}}

{{- define "tower.tokensSecret" -}}
{{- if .Values.web.tokens.content -}}
{{- printf "%s-web-tokens" (include "tower.fullname" .) -}}
{{- else -}}
{{- .Values.web.tokens.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "tower.tokensSecretKey" -}}
{{- if .Values.web.tokens.content }}tokens{{ else }}{{ .Values.web.tokens.existingSecretKey }}{{ end -}}
{{- end -}}

{{- define "tower.peerKeySecretKey" -}}
{{- if .Values.web.tokens.content }}peer-key{{ else }}{{ .Values.web.tokens.existingSecretPeerKey }}{{ end -}}
{{- end -}}

{{- define "tower.policyConfigMap" -}}
{{- if .Values.policy.content -}}
{{- printf "%s-policy" (include "tower.fullname" .) -}}
{{- else -}}
{{- .Values.policy.existingConfigMap -}}
{{- end -}}
{{- end -}}

{{- define "tower.policyKey" -}}
{{- if .Values.policy.content }}policy.yaml{{ else }}{{ .Values.policy.existingConfigMapKey }}{{ end -}}
{{- end -}}

{{/*
TOWER_* settings with a typed value above (name -> value); the env map may not repeat them.
*/}}
{{- define "tower.typedEnv" -}}
{{- $v := .Values -}}
{{- $t := $v.tower -}}
{{- $env := dict
  "TOWER_BOOTSTRAP" $v.kafka.bootstrap
  "TOWER_SECURITY_PROTOCOL" $v.kafka.securityProtocol
  "TOWER_APP_ID" $t.appId
  "TOWER_PARTITIONS" $t.partitions
  "TOWER_REPLICATION_FACTOR" $t.replicationFactor
  "TOWER_RUNTIME" $t.runtime
  "TOWER_EVENT_LOOP" $t.eventLoop
  "TOWER_OUTPUT_FORMAT" $t.outputFormat
  "TOWER_COMPRESSION" $t.compression
  "TOWER_MAX_EVENT_BYTES" $t.maxEventBytes
  "TOWER_BATCH_SIZE" $t.batchSize
  "TOWER_BATCH_WITHIN_S" $t.batchWithinS
  "TOWER_TRANSACTION_MAX_RECORDS" $t.transactionMaxRecords
  "TOWER_POLICY_WAIT_S" $t.policyWaitS
  "TOWER_POLICY_REQUIRE_APPROVAL" $t.policyRequireApproval
  "TOWER_LIVENESS_STALL_S" $t.livenessStallS
  "TOWER_WEB_PORT" $v.web.port
  "TOWER_WEB_OPEN_METRICS" $v.web.openMetrics
  "TOWER_TOPIC_EVENTS" $v.topics.events
  "TOWER_TOPIC_WAKEUPS" $v.topics.wakeups
  "TOWER_TOPIC_APPROVED" $v.topics.approved
  "TOWER_TOPIC_AUDIT" $v.topics.audit
  "TOWER_TOPIC_DEADLETTER" $v.topics.deadletter
  "TOWER_TOPIC_POLICIES" $v.topics.policies
-}}
{{- if include "tower.usesSasl" . -}}
{{- $_ := set $env "TOWER_SASL_MECHANISM" $v.kafka.sasl.mechanism -}}
{{- $_ := set $env "TOWER_SASL_USERNAME" (include "tower.saslUsername" .) -}}
{{- end -}}
{{- toJson $env -}}
{{- end -}}

{{/* TOWER_* names the chart sets itself -> the value to use instead */}}
{{- define "tower.reservedEnv" -}}
{{- toJson (dict
  "TOWER_INSTANCE_ID" "nothing: it is the pod's name"
  "TOWER_WEB_URL" "nothing: it is the pod's DNS name under the headless Service"
  "TOWER_WEB_HOST" "nothing: the worker binds 0.0.0.0"
  "TOWER_WEB_PEERS" "web.extraPeers"
  "TOWER_DATA_DIR" "persistence.* (the state is on /data)"
  "TOWER_SASL_MECHANISM" "kafka.sasl.mechanism"
  "TOWER_SASL_USERNAME" "kafka.sasl.username"
  "TOWER_SASL_PASSWORD" "kafka.sasl.existingSecret (a secret value never goes in env)"
  "TOWER_SASL_PASSWORD_FILE" "kafka.sasl.existingSecret"
  "TOWER_SSL_CA_FILE" "kafka.tls.existingSecret"
  "TOWER_SSL_CERT_FILE" "kafka.tls.existingSecret and kafka.tls.certKey"
  "TOWER_SSL_KEY_FILE" "kafka.tls.existingSecret and kafka.tls.keyKey"
  "TOWER_WEB_TOKENS_FILE" "web.tokens.existingSecret"
  "TOWER_WEB_TOKEN" "nothing: a client's token has no place on a worker"
  "TOWER_WEB_TLS_CERT" "web.tls.existingSecret"
  "TOWER_WEB_TLS_KEY" "web.tls.existingSecret"
  "TOWER_POLICY_FILE" "policy.existingConfigMap or policy.content"
  "TOWER_ENGINE" "tower.runtime"
) -}}
{{- end -}}

{{/* Fail the render, in one line, on values that cannot work together. */}}
{{- define "tower.validate" -}}
{{- $v := .Values -}}
{{- $typed := include "tower.typedEnv" . | fromJson -}}
{{- $reserved := include "tower.reservedEnv" . | fromJson -}}
{{- range $name, $_ := $v.env -}}
{{- if hasKey $reserved $name -}}
{{- fail (printf "env.%s: the chart sets it; use %s" $name (get $reserved $name)) -}}
{{- end -}}
{{- if hasKey $typed $name -}}
{{- fail (printf "env.%s: it has a typed value; set it there (see values.yaml: the comment naming %s)" $name $name) -}}
{{- end -}}
{{- end -}}
{{- if and (not $v.keda.enabled) (gt (int $v.replicaCount) (int $v.tower.partitions)) -}}
{{- fail (printf "replicaCount=%d is more than tower.partitions=%d: a worker without a partition idles; lower replicaCount" (int $v.replicaCount) (int $v.tower.partitions)) -}}
{{- end -}}
{{- if and $v.keda.enabled (gt (int $v.keda.maxReplicaCount) (int $v.tower.partitions)) -}}
{{- fail (printf "keda.maxReplicaCount=%d is more than tower.partitions=%d (the partitions of %s): replicas beyond that get no partition; lower keda.maxReplicaCount" (int $v.keda.maxReplicaCount) (int $v.tower.partitions) $v.topics.events) -}}
{{- end -}}
{{- if and $v.keda.enabled (gt (int $v.keda.minReplicaCount) (int $v.keda.maxReplicaCount)) -}}
{{- fail (printf "keda.minReplicaCount=%d is more than keda.maxReplicaCount=%d" (int $v.keda.minReplicaCount) (int $v.keda.maxReplicaCount)) -}}
{{- end -}}
{{- if and (include "tower.usesSasl" .) (not (include "tower.saslSecret" .)) -}}
{{- fail (printf "kafka.securityProtocol=%s needs the SASL password: set kafka.sasl.existingSecret (or strimzi.users.enabled)" $v.kafka.securityProtocol) -}}
{{- end -}}
{{- if and (include "tower.usesSasl" .) (not (include "tower.saslUsername" .)) -}}
{{- fail (printf "kafka.securityProtocol=%s needs kafka.sasl.username (or strimzi.users.enabled)" $v.kafka.securityProtocol) -}}
{{- end -}}
{{- if ne (empty $v.kafka.tls.certKey) (empty $v.kafka.tls.keyKey) -}}
{{- fail "mTLS needs both kafka.tls.certKey and kafka.tls.keyKey" -}}
{{- end -}}
{{- if and (or $v.kafka.tls.certKey $v.kafka.tls.caKey) (not (include "tower.usesKafkaTls" .)) $v.kafka.tls.existingSecret -}}
{{- fail (printf "kafka.tls.existingSecret is set but kafka.securityProtocol=%s uses no TLS: use SSL or SASL_SSL" $v.kafka.securityProtocol) -}}
{{- end -}}
{{- if and $v.web.tokens.content (not $v.web.tokens.peerKeyContent) -}}
{{- fail "web.tokens.peerKeyContent: a worker with tokens refuses to start without a peer key: give the text of `tower web peer-key new`'s file too" -}}
{{- end -}}
{{- if not (include "tower.tokensSecret" .) -}}
{{- fail "web.tokens: the worker listens on 0.0.0.0 and refuses to start without a tokens file: set web.tokens.existingSecret (a Secret made from `tower web token add`'s file)" -}}
{{- end -}}
{{- if and $v.web.tls.enabled (not $v.web.tls.existingSecret) -}}
{{- fail "web.tls.enabled needs web.tls.existingSecret (a kubernetes.io/tls Secret)" -}}
{{- end -}}
{{- if and $v.podMonitor.enabled (not $v.web.openMetrics) (not $v.podMonitor.tokenSecret.name) -}}
{{- fail "podMonitor.enabled: /metrics needs a viewer token; set podMonitor.tokenSecret.name or web.openMetrics=true" -}}
{{- end -}}
{{- if and $v.strimzi.users.enabled (not (has "tower" $v.strimzi.users.roles)) (not $v.kafka.sasl.username) (include "tower.usesSasl" .) -}}
{{- fail "strimzi.users.roles has no `tower` role for the workers: add it or set kafka.sasl.username" -}}
{{- end -}}
{{- end -}}

{{/* A value as an env var's text; whole numbers without an exponent (YAML numbers are floats) */}}
{{- define "tower.envValue" -}}
{{- if and (kindIs "float64" .) (eq (float64 .) (float64 (int64 .))) -}}
{{- int64 . -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end -}}
