# The teleport-ts AMI: Amazon Linux 2023 with Node.js and this package, one image for every role.
# The role is chosen at boot by the instance's user data (/etc/teleport.d/conf); see ami/README.md.
#
#   npm pack                                             # in the checkout: teleport-ts-<version>.tgz
#   packer init ami/                                     # the Amazon plugin (plugins.pkr.hcl)
#   packer build -var package=teleport-ts-<version>.tgz ami/
#
# Written for Packer's HCL2 with the amazon-ebs builder, using only what Debian's packer 1.6.6 also has
# built in, so the tests validate it there (without plugins.pkr.hcl, which 1.6.6 predates).

locals {
  # teleport-ts-0.1.0.tgz -> 0.1.0
  version       = var.version != "" ? var.version : regex_replace(basename(var.package), "^.*-([0-9]+\\.[0-9]+\\.[0-9]+[^/]*)\\.tgz$", "$1")
  instance_type = var.instance_type != "" ? var.instance_type : (var.arch == "arm64" ? "t4g.small" : "t3.small")
  timestamp     = formatdate("YYYYMMDDhhmmss", timestamp())
  # Not /tmp: CIS-hardened images mount it noexec.
  staging = "/home/ec2-user/teleport-ami"
}

source "amazon-ebs" "al2023" {
  region        = var.region
  instance_type = local.instance_type
  vpc_id        = var.vpc_id
  subnet_id     = var.subnet_id

  source_ami_filter {
    filters = {
      name                = "al2023-ami-2023.*-kernel-*-${var.arch}"
      architecture        = var.arch
      root-device-type    = "ebs"
      virtualization-type = "hvm"
    }
    owners      = ["amazon"]
    most_recent = true
  }

  ami_name        = "${var.ami_name_prefix}-${local.version}-${var.arch}-${local.timestamp}"
  ami_description = "teleport-ts ${local.version} (every role, chosen at boot by /etc/teleport.d/conf) on Amazon Linux 2023, Node.js ${var.node_major}, ${var.arch}"

  # IMDSv2: Packer 1.6.6's amazon-ebs has no metadata_options (nor imds_support). The build instance is
  # IMDSv2-only all the same, because Amazon Linux 2023 images are registered with ImdsSupport=v2.0,
  # which launches their instances with HttpTokens=required; install.sh fails the build if IMDSv1
  # answers. The instances the image runs on get IMDSv2 from their launch template (the CDK app sets
  # requireImdsv2). With the Amazon plugin >= 1.1 you can add here:
  #   metadata_options { http_tokens = "required" }   and   imds_support = "v2.0"

  launch_block_device_mappings {
    device_name           = "/dev/xvda"
    volume_type           = "gp3"
    iops                  = 3000 # gp3 baseline
    throughput            = 125  # MiB/s, gp3 baseline
    volume_size           = var.root_volume_size_gib
    encrypted             = var.encrypt_boot
    kms_key_id            = var.encrypt_boot ? var.kms_key_id : ""
    delete_on_termination = true
  }
  encrypt_boot = var.encrypt_boot
  kms_key_id   = var.encrypt_boot ? var.kms_key_id : ""

  communicator              = "ssh"
  ssh_username              = "ec2-user"
  ssh_clear_authorized_keys = true

  run_tags = {
    Name = "packer ${var.ami_name_prefix}-${local.version}-${var.arch}"
  }
  tags = {
    Name          = "${var.ami_name_prefix}-${local.version}-${var.arch}"
    Version       = local.version
    NodeMajor     = "${var.node_major}"
    Architecture  = var.arch
    BaseAMI       = "{{ .SourceAMI }}"
    BaseAMIName   = "{{ .SourceAMIName }}"
    BuildRegion   = "{{ .BuildRegion }}"
  }
  snapshot_tags = {
    Name    = "${var.ami_name_prefix}-${local.version}-${var.arch}"
    Version = local.version
  }
}

build {
  sources = ["source.amazon-ebs.al2023"]

  provisioner "shell" {
    inline = ["mkdir -p ${local.staging}/files"]
  }

  provisioner "file" {
    source      = var.package
    destination = "${local.staging}/teleport-ts.tgz"
  }

  # ami/files (install.sh, the systemd units, the unit preset), from the template's directory.
  provisioner "file" {
    source      = "${path.root}/files/"
    destination = "${local.staging}/files"
  }

  provisioner "shell" {
    remote_folder   = "/home/ec2-user"
    execute_command = "sudo env {{ .Vars }} bash '{{ .Path }}'"
    environment_vars = [
      "NODE_MAJOR=${var.node_major}",
      "PACKAGE=${local.staging}/teleport-ts.tgz",
      "FILES=${local.staging}/files",
      "STAGING=${local.staging}",
    ]
    inline = ["bash \"$FILES/install.sh\""]
  }
}
