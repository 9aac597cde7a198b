{{/* Names ---------------------------------------------------------------------- */}}

{{- define "ferry.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name, at most 52 characters so that "-inference" still fits
in a Service name's 63. */}}
{{- define "ferry.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "ferry.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels ----------------------------------------------------------------------- */}}

{{- define "ferry.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ferry.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ferry.labels" -}}
helm.sh/chart: {{ include "ferry.chart" . }}
{{ include "ferry.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ferry
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* (dict "root" $ "component" "inference") */}}
{{- define "ferry.componentSelectorLabels" -}}
{{ include "ferry.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "ferry.componentLabels" -}}
{{ include "ferry.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "ferry.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ferry.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "ferry.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Secrets -------------------------------------------------------------------- */}}

{{- define "ferry.databaseSecretName" -}}
{{- default (printf "%s-database" (include "ferry.fullname" .)) .Values.database.existingSecret -}}
{{- end -}}

{{- define "ferry.databaseSecretKey" -}}
{{- if .Values.database.existingSecret -}}{{ .Values.database.existingSecretKey }}{{- else -}}url{{- end -}}
{{- end -}}

{{- define "ferry.redisEnabled" -}}
{{- if or .Values.redis.url .Values.redis.existingSecret -}}true{{- end -}}
{{- end -}}

{{- define "ferry.redisSecretName" -}}
{{- default (printf "%s-redis" (include "ferry.fullname" .)) .Values.redis.existingSecret -}}
{{- end -}}

{{- define "ferry.redisSecretKey" -}}
{{- if .Values.redis.existingSecret -}}{{ .Values.redis.existingSecretKey }}{{- else -}}url{{- end -}}
{{- end -}}

{{- define "ferry.authSecretName" -}}
{{- default (printf "%s-bootstrap-admin-key" (include "ferry.fullname" .)) .Values.auth.existingSecret -}}
{{- end -}}

{{- define "ferry.authSecretKey" -}}
{{- if .Values.auth.existingSecret -}}{{ .Values.auth.existingSecretKey }}{{- else -}}admin-key{{- end -}}
{{- end -}}

{{- define "ferry.bootstrapKeyDir" -}}/etc/ferry/bootstrap{{- end -}}

{{/* A new key in Ferry's format, fy_<12 hex>_<43 characters> (ferry.security.keys):
sprig's rand* functions read crypto/rand; 43 alphanumerics are 256 bits. */}}
{{- define "ferry.newKey" -}}
{{- printf "fy_%s_%s" (randAlphaNum 32 | sha256sum | trunc 12) (randAlphaNum 43) -}}
{{- end -}}

{{/* Settings -------------------------------------------------------------------- */}}

{{/* Half of a memory quantity (e.g. 4Gi, 3000M, 512Mi), in MiB: FERRY_ONNX_MEMORY_MB. */}}
{{- define "ferry.halfMemoryMb" -}}
{{- $quantity := toString . -}}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" $quantity -}}
{{- $suffix := trimPrefix $number $quantity -}}
{{- $factors := dict "" 1.0 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 -}}
{{- if or (not $number) (not (hasKey $factors $suffix)) -}}
{{- fail (printf "cannot read the memory quantity %q: give inference.onnxMemoryMb" $quantity) -}}
{{- end -}}
{{- divf (mulf (float64 $number) (get $factors $suffix)) 2097152 | floor | int -}}
{{- end -}}

{{- define "ferry.terminationGracePeriodSeconds" -}}
{{- $drain := add (int .Values.ferry.preStopSleepSeconds) (int (ceil .Values.ferry.gracefulTimeoutSeconds)) -}}
{{- if kindIs "invalid" .Values.ferry.terminationGracePeriodSeconds -}}
{{- add $drain 15 -}}
{{- else if le (int .Values.ferry.terminationGracePeriodSeconds) $drain -}}
{{- fail (printf "ferry.terminationGracePeriodSeconds (%v) must be longer than ferry.preStopSleepSeconds + ferry.gracefulTimeoutSeconds (%v): Kubernetes would kill Ferry while it drains" .Values.ferry.terminationGracePeriodSeconds $drain) -}}
{{- else -}}
{{- .Values.ferry.terminationGracePeriodSeconds -}}
{{- end -}}
{{- end -}}

{{- define "ferry.scheme" -}}
{{- if .Values.ferry.tlsSecret -}}HTTPS{{- else -}}HTTP{{- end -}}
{{- end -}}

{{/* Values that cannot work, refused at render time with a message. */}}
{{- define "ferry.validate" -}}
{{- if not (or .Values.database.url .Values.database.existingSecret) -}}
{{- fail "give database.url (postgresql+psycopg://user:password@host:5432/ferry) or database.existingSecret: every node shares one PostgreSQL registry" -}}
{{- end -}}
{{- if and .Values.database.url .Values.database.existingSecret -}}
{{- fail "give database.url or database.existingSecret, not both" -}}
{{- end -}}
{{- if and .Values.database.url (hasPrefix "sqlite" .Values.database.url) -}}
{{- fail "database.url: SQLite cannot be shared by several nodes; use PostgreSQL (postgresql+psycopg://...)" -}}
{{- end -}}
{{- if and .Values.redis.url .Values.redis.existingSecret -}}
{{- fail "give redis.url or redis.existingSecret, not both" -}}
{{- end -}}
{{- if and .Values.auth.bootstrapAdminKey .Values.auth.existingSecret -}}
{{- fail "give auth.bootstrapAdminKey or auth.existingSecret, not both" -}}
{{- end -}}
{{- if and .Values.auth.bootstrapAdminKey (not (regexMatch "^fy_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$" (trim .Values.auth.bootstrapAdminKey))) -}}
{{- fail "auth.bootstrapAdminKey is not a Ferry key: make one with `ferry keys generate`" -}}
{{- end -}}
{{- if eq .Values.storage.type "s3" -}}
{{- if not (hasPrefix "s3://" .Values.storage.s3.artifactsUrl) -}}
{{- fail "storage.type s3 needs storage.s3.artifactsUrl: s3://bucket/prefix" -}}
{{- end -}}
{{- end -}}
{{- if .Values.inference.autoscaling.enabled -}}
{{- if and (kindIs "invalid" .Values.inference.autoscaling.targetCPUUtilizationPercentage) (not .Values.inference.autoscaling.inflightRequests.enabled) -}}
{{- fail "inference.autoscaling needs a metric: targetCPUUtilizationPercentage or inflightRequests.enabled" -}}
{{- end -}}
{{- if gt (int .Values.inference.autoscaling.minReplicas) (int .Values.inference.autoscaling.maxReplicas) -}}
{{- fail "inference.autoscaling.minReplicas is more than maxReplicas" -}}
{{- end -}}
{{- end -}}
{{- $_ := include "ferry.terminationGracePeriodSeconds" . -}}
{{- end -}}
