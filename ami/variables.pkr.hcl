# Inputs of the teleport-ts AMI build (ami/README.md). Every variable is checked before anything is
# started on AWS; the messages say what is expected.

variable "package" {
  type        = string
  description = "Path of the npm package tarball to install (the output of `npm pack` in the checkout, e.g. teleport-ts-0.1.0.tgz)."
  validation {
    condition     = regex_replace(basename(var.package), "^[A-Za-z0-9@._-]+-[0-9]+\\.[0-9]+\\.[0-9]+([-+][0-9A-Za-z.-]+)?\\.tgz$", "") == "" && fileexists(var.package)
    error_message = "The package variable must name an existing .tgz file made by `npm pack` (run it in the checkout first)."
  }
}

variable "version" {
  type        = string
  default     = ""
  description = "Version recorded in the AMI name and tags. Default: taken from the tarball's name (teleport-ts-<version>.tgz)."
  validation {
    condition     = var.version == "" || regex_replace(var.version, "^[0-9]+\\.[0-9]+\\.[0-9]+([-+][0-9A-Za-z.-]+)?$", "") == ""
    error_message = "The version variable must be empty or a semantic version such as 1.2.3 or 1.2.3-rc.1."
  }
}

variable "region" {
  type        = string
  default     = "us-east-1"
  description = "AWS region the image is built in (and registered in)."
  validation {
    condition     = var.region != "" && regex_replace(var.region, "^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]$", "") == ""
    error_message = "The region variable must be an AWS region name such as us-east-1 or eu-west-2."
  }
}

variable "arch" {
  type        = string
  default     = "x86_64"
  description = "CPU architecture of the image: x86_64 or arm64 (Graviton)."
  validation {
    condition     = contains(["x86_64", "arm64"], var.arch)
    error_message = "The arch variable must be x86_64 or arm64."
  }
}

variable "instance_type" {
  type        = string
  default     = ""
  description = "Instance type of the build instance. Default: t3.small for x86_64, t4g.small for arm64 (it must match arch)."
  validation {
    condition     = var.instance_type == "" || regex_replace(var.instance_type, "^[a-z][a-z0-9-]*\\.[a-z0-9]+$", "") == ""
    error_message = "The instance_type variable must be empty or an EC2 instance type such as t3.small."
  }
}

variable "node_major" {
  type        = number
  default     = 24
  description = "Major version of the Amazon Linux 2023 Node.js package to install (nodejs<major>): a Node.js LTS line still supported upstream."
  validation {
    condition     = contains([22, 24], var.node_major)
    error_message = "The node_major variable must be 22 or 24 (the supported Node.js LTS lines Amazon Linux 2023 packages; Node.js 20 reached its end of life in April 2026)."
  }
}

variable "ami_name_prefix" {
  type        = string
  default     = "teleport-ts"
  description = "Start of the AMI name; the name is <prefix>-<version>-<arch>-<timestamp>."
  validation {
    condition     = var.ami_name_prefix != "" && regex_replace(var.ami_name_prefix, "^[A-Za-z0-9][A-Za-z0-9()./_-]{2,63}$", "") == ""
    error_message = "The ami_name_prefix variable must be 3 to 64 characters: letters, digits and ( ) . / _ -, starting with a letter or digit."
  }
}

variable "vpc_id" {
  type        = string
  default     = ""
  description = "VPC to build in. Default: the region's default VPC."
  validation {
    condition     = var.vpc_id == "" || regex_replace(var.vpc_id, "^vpc-([0-9a-f]{8}|[0-9a-f]{17})$", "") == ""
    error_message = "The vpc_id variable must be empty or a VPC ID such as vpc-0123456789abcdef0."
  }
}

variable "subnet_id" {
  type        = string
  default     = ""
  description = "Subnet to build in (it must give the instance a route Packer can reach over SSH). Default: chosen by EC2 in the VPC."
  validation {
    condition     = var.subnet_id == "" || regex_replace(var.subnet_id, "^subnet-([0-9a-f]{8}|[0-9a-f]{17})$", "") == ""
    error_message = "The subnet_id variable must be empty or a subnet ID such as subnet-0123456789abcdef0."
  }
}

variable "root_volume_size_gib" {
  type        = number
  default     = 8
  description = "Size of the image's root volume (gp3) in GiB; instances can launch with a larger one."
  validation {
    condition     = var.root_volume_size_gib >= 8 && var.root_volume_size_gib <= 16384 && floor(var.root_volume_size_gib) == var.root_volume_size_gib
    error_message = "The root_volume_size_gib variable must be a whole number from 8 (Amazon Linux 2023's minimum) to 16384."
  }
}

variable "encrypt_boot" {
  type        = bool
  default     = true
  description = "Encrypt the image's snapshot (with kms_key_id, or the account's default EBS key). Images encrypted with the default key cannot be shared with other accounts; with false, encryption is left to the launch template (the CDK app encrypts at launch)."
}

variable "kms_key_id" {
  type        = string
  default     = ""
  description = "KMS key (ID, ARN or alias ARN) that encrypts the snapshot when encrypt_boot is true. Default: the account's default EBS key."
  validation {
    condition     = var.kms_key_id == "" || regex_replace(var.kms_key_id, "^(arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:(key|alias)/.+|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|alias/.+)$", "") == ""
    error_message = "The kms_key_id variable must be empty, a key ID, an alias/..., or a KMS key or alias ARN."
  }
}
